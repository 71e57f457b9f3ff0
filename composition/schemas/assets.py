"""Assets as the API shows them: an uploaded or generated file's id, content type, size and where it is served."""
from __future__ import annotations

from pydantic import BaseModel

from models.formats import MEDIA_TYPES

EXTENSIONS = {content_type: fmt for fmt, content_type in MEDIA_TYPES.items()} | {  # "image/webp" → "webp"
    "application/json": "json", "text/plain; charset=utf-8": "txt"}  # a storyboard's exports


def asset_url(asset_id: str) -> str:
    """Where the API serves an asset's bytes."""
    return f"/v1/assets/{asset_id}"


class AssetInfo(BaseModel):
    id: str
    content_type: str
    bytes: int
    kind: str
    width: int | None = None
    height: int | None = None
    created_at: float

    @property
    def url(self) -> str:
        return asset_url(self.id)

    @property
    def size(self) -> tuple[int | None, int | None]:
        return self.width, self.height

    @property
    def filename(self) -> str:
        """`<id>.<extension>` of its content type (the bare id for another type)."""
        extension = EXTENSIONS.get(self.content_type)
        return f"{self.id}.{extension}" if extension else self.id
