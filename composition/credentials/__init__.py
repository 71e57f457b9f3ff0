"""Content credentials: the recipe of every output (`recipe`), a C2PA manifest signed onto its bytes (`signing`,
with the certificate chain of `chain`), and replay of a recipe (`replay`). The invisible watermark lives with the
pixels, in `models.watermark`."""
