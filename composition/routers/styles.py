"""Style profiles: PUT/GET/DELETE /v1/styles/{soul_id}, GET /v1/styles."""
from __future__ import annotations

from fastapi import APIRouter, Response

from composition.deps import IdPath, ServicesDep
from composition.schemas.styles import StyleEntry, StyleProfile

router = APIRouter(prefix="/v1/styles", tags=["styles"])


@router.put("/{soul_id}")
async def put_style(soul_id: IdPath, profile: StyleProfile, services: ServicesDep) -> StyleEntry:
    return await services.styles.put(soul_id, profile)


@router.get("/{soul_id}")
async def get_style(soul_id: IdPath, services: ServicesDep) -> StyleEntry:
    return await services.styles.get(soul_id)


@router.delete("/{soul_id}", status_code=204)
async def delete_style(soul_id: IdPath, services: ServicesDep) -> Response:
    await services.styles.delete(soul_id)
    return Response(status_code=204)


@router.get("")
async def list_styles(services: ServicesDep) -> dict[str, list[StyleEntry]]:
    return {"styles": await services.styles.all()}
