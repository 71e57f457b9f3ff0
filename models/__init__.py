"""Pure inference: one module per model family, no Ray."""
