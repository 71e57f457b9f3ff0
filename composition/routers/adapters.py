"""LoRA adapters: GET /v1/adapters (each image family's, as its replicas found them, and who holds which); POST
/v1/adapters/{family} (upload one: checked by a replica against its model, the bytes into the asset store) and
DELETE /v1/adapters/{family}/{id} (an uploaded one), admin keys only when auth is on."""
from __future__ import annotations

import hashlib
import re
from pathlib import PurePath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Response, UploadFile

from composition.auth import AdminDep
from composition.deps import ServicesDep
from composition.errors import Conflict, NotFound
from composition.schemas.adapters import AdapterOut, AdaptersOut, FamilyAdapters
from config.families import adapter_size_error
from config.ids import ADAPTER_ID
from config.specs import families_with
from models.errors import InvalidRequest

router = APIRouter(tags=["adapters"])
FamilyPath = Annotated[Literal[tuple(families_with("generate"))], Path(description="an image family")]
AdapterIdPath = Annotated[str, Path(alias="id", pattern=ADAPTER_ID, description="an uploaded adapter's id")]
ADAPTER_ID_RULE = "an adapter id: lowercase letters, digits, '.', '_' or '-', up to 64"


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


@router.post("/v1/adapters/{family}", status_code=201)
async def upload_adapter(family: FamilyPath, file: Annotated[UploadFile, File(description="a LoRA .safetensors file")],
                         services: ServicesDep, _: AdminDep,
                         adapter_id: Annotated[str | None, Form(alias="id", description="default: the file's name "
                                                                                        "without .safetensors")] = None
                         ) -> AdapterOut:
    """Adds an adapter to the family's catalogue, usable by the next request on every replica: checked as the
    folder's files are (size, rank, every adapted module with its shapes: 422 naming `file`), its bytes stored in
    the asset store. An id the catalogue has (a file, a hub id, an upload) is a 409."""
    name = adapter_id if adapter_id is not None else PurePath(file.filename or "").name.removesuffix(".safetensors")
    if not re.fullmatch(ADAPTER_ID, name):
        raise InvalidRequest("id", f"{name!r} is not {ADAPTER_ID_RULE} (give `id` when the file's name is not one)")
    limit_mb = services.defaults_of(family).max_adapter_mb
    data = await file.read(int(limit_mb * 2**20) + 1)
    if why := adapter_size_error(max(file.size or 0, len(data)), limit_mb):
        raise InvalidRequest("file", why)
    if (known := (await services.adapters.catalogue(family)).get(name)) is not None:
        raise Conflict("id", f"{family} has an adapter {name!r} already ({known.source}); delete it or choose "
                             "another id")
    info = await services.handle(family).check_adapter.remote(name, data)
    if info.error:
        raise InvalidRequest("file", f"adapter {name!r} does not fit {family}: {info.error}")
    blob = hashlib.sha256(data).hexdigest()[:32]
    await services.assets.blobs.put_once(blob, data)
    info = info.model_copy(update={"blob": blob})
    if not await services.adapters.add_upload(info):
        raise Conflict("id", f"{family} has an adapter {name!r} already (upload); delete it or choose another id")
    return AdapterOut(**info.model_dump(), replicas=[])


@router.delete("/v1/adapters/{family}/{id}", status_code=204)
async def delete_adapter(family: FamilyPath, adapter_id: AdapterIdPath, services: ServicesDep,
                         _: AdminDep) -> Response:
    """Removes an uploaded adapter: the next request naming it is a 422. A folder's file or a hub id is a 409."""
    services.handle(family)
    if await services.adapters.remove_upload(family, adapter_id):
        return Response(status_code=204)
    if (known := (await services.adapters.catalogue(family)).get(adapter_id)) is not None:
        raise Conflict("id", f"adapter {adapter_id!r} is no upload ({known.source}): remove it from the server's "
                             "adapter folder or hub map")
    raise NotFound(f"adapter {adapter_id!r} of {family}", "id")

