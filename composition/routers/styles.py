"""Style profiles: PUT/GET/DELETE /v1/styles/{soul_id}, GET /v1/styles."""
from __future__ import annotations

from fastapi import APIRouter, Response

from composition.deps import IdPath, ServicesDep
from composition.errors import NotFound
from composition.schemas.styles import StyleEntry, StyleProfile

router = APIRouter(prefix="/v1/styles", tags=["styles"])


@router.put("/{soul_id}")
async def put_style(soul_id: IdPath, profile: StyleProfile, services: ServicesDep) -> StyleEntry:
    """Saves a soul's style; its size and adapters must be ones its model serves here (every image of the soul
    uses them)."""
    defaults = services.defaults_of(profile.model)
    await services.check_size(profile.model, profile.width or defaults.width, profile.height or defaults.height)
    await services.check_loras(profile.model, profile.loras)
    await services.styles.put(soul_id, profile)
    return StyleEntry(soul_id=soul_id, **profile.model_dump())


@router.get("/{soul_id}")
async def get_style(soul_id: IdPath, services: ServicesDep) -> StyleEntry:
    return StyleEntry(soul_id=soul_id, **(await services.style(soul_id)).model_dump())


@router.delete("/{soul_id}", status_code=204)
async def delete_style(soul_id: IdPath, services: ServicesDep) -> Response:
    if not await services.styles.delete(soul_id):
        raise NotFound(f"style of soul {soul_id}", "soul_id")
    return Response(status_code=204)


@router.get("")
async def list_styles(services: ServicesDep) -> dict[str, list[StyleEntry]]:
    return {"styles": [StyleEntry(soul_id=soul, **style.model_dump())
                       for soul, style in (await services.styles.all()).items()]}
