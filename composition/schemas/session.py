"""The web page's session: a cookie standing for the caller's key on media and task events."""
from __future__ import annotations

from pydantic import BaseModel, Field


class SessionOut(BaseModel):
    """An open session; both null with auth off, where no cookie is needed and none is set."""

    user_id: str | None = Field(description="the user of the key the session stands for")
    expires_at: float | None = Field(description="unix seconds; the cookie's Max-Age ends then too")
