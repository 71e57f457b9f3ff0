"""Validated configuration: pydantic only, no torch and no ray."""
