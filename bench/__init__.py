"""Benchmarks that print figures (no timing asserts live in tests)."""
