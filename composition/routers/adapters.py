"""GET /v1/adapters: the LoRA adapters of each image family, as its replicas found them, and who holds which."""
from __future__ import annotations

from fastapi import APIRouter

from composition.deps import ServicesDep
from composition.schemas.adapters import AdapterOut, AdaptersOut, FamilyAdapters
from config.specs import families_with

router = APIRouter(tags=["adapters"])


@router.get("/v1/adapters")
async def list_adapters(services: ServicesDep) -> AdaptersOut:
    families = []
    for family in families_with("generate"):
        if family not in services.handles:
            continue
        holdings = await services.adapters.holdings(family)
        adapters = [AdapterOut(**info.model_dump(), replicas=[h.replica for h in holdings if info.id in h.loaded])
                    for info in (await services.adapters.catalogue(family)).values()]
        families.append(FamilyAdapters(family=family, max_per_request=services.defaults_of(family).max_loras,
                                       adapters=adapters, replicas=holdings))
    return AdaptersOut(families=families)
