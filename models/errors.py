"""The one error a request's own content raises, from any layer: it names the field at fault."""
from __future__ import annotations


class InvalidRequest(ValueError):
    """A request the system cannot serve as asked (a 422 naming `field`); never retried. A `ValueError`, so pydantic
    validators report it as a validation error; picklable, so it crosses Ray's process boundary as itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field, self.message = field, message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"
