"""Content credentials over HTTP: an asset's provenance, a replay's outcome, a checked upload."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.credentials.recipe import RECIPE_LABEL
from models.types import Detection

REPLAY_NOTE = ("bit-identical on the same model source, device class and settings when the output ran alone; one that "
               "ran batched or fused with others may differ by a level (another batch shape sums in another order), "
               "and another GPU model, torch.compile, fp8 or a different kernel library changes the floating-point "
               "sums and so the pixels")


class Verdict(BaseModel):
    """What a manifest says of some bytes: `state` Trusted (valid, signed by the configured chain), Valid (valid, by
    another signer), Invalid, or None without a manifest; `changed`: bytes the manifest covers were changed after
    signing."""

    state: str | None = None
    changed: bool = False
    failures: list[str] = Field(default_factory=list, description="the validation failures' codes")
    manifest: dict[str, Any] | None = None

    @property
    def recipe(self) -> dict[str, Any] | None:
        for assertion in (self.manifest or {}).get("assertions", []):
            if assertion.get("label") == RECIPE_LABEL:
                return assertion.get("data")
        return None


class AssetProvenance(BaseModel):
    asset_id: str
    recipe: dict[str, Any] = Field(description="how it was made (the prompt only with credentials.include_prompt)")
    manifest: Verdict = Field(description="the C2PA manifest in its bytes, validated against the configured chain")


class ProvenanceCheck(BaseModel):
    content_type: str
    montage: bool = Field(description="made by Montage: its watermark found, or a valid manifest of this Montage")
    watermark: Detection = Field(description="the watermark read from the first frame")
    manifest: Verdict = Field(description="the C2PA manifest, if any, validated against the configured chain")
    pixels_changed: bool = Field(description="the manifest does not match the bytes it signed (edited after signing)")
    recipe: dict[str, Any] | None = Field(default=None, description="Montage's recipe, as the manifest holds it")


class ReplayOut(BaseModel):
    asset_id: str = Field(description="the asset compared: the one asked, or the image a rendition re-encodes")
    identical: bool
    max_pixel_difference: int = Field(description="the largest difference of one channel of one pixel (0-255)")
    frames: int
    recipe: dict[str, Any] = Field(description="the recipe replayed (the prompt only with credentials.include_prompt)")
    note: str = REPLAY_NOTE
