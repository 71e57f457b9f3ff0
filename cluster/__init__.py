"""Ray cluster and Redis lifecycle, placement planning and the `montage` CLI."""
