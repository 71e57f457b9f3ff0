"""Style profiles of souls (characters): look, art style and generation defaults."""
from __future__ import annotations

from pydantic import Field

from composition.schemas.common import Body, text
from composition.store.styles import Style


class StyleProfile(Body, Style):
    """A soul's style as a request body (unknown fields are refused)."""

    prompt: text(1000) = Field(description="look and art style, e.g. 'a red-haired sailor, ink'")


class StyleEntry(Style):
    soul_id: str
