"""Style profiles of souls (characters): look, art style and generation defaults."""
from __future__ import annotations

from composition.schemas.common import Body
from composition.store.styles import Style


class StyleProfile(Body, Style):
    """A soul's style as a request body (unknown fields are refused)."""


class StyleEntry(Style):
    soul_id: str
