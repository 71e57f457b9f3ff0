"""Thin HTTP routers, one per feature: validate, call the workflow or store, shape the response."""
