"""Thin Ray Serve deployments around models/: batching, placement, health, reconfigure."""
