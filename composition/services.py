"""Everything a workflow or router needs, built once per replica from the app args."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from ray.serve.handle import DeploymentHandle

from composition.catalogue import Catalogue, load_catalogue
from composition.credentials.chain import load_chain, signing_hook
from composition.credentials.recipe import Recipe
from composition.credentials.signing import ContentSigner
from composition.errors import ApiError, NotFound
from composition.schemas.assets import AssetInfo
from composition.schemas.projects import Project
from composition.schemas.styles import Style
from composition.store.access import AccessStore
from composition.store.adapters import AdapterStore
from composition.store.assets import AssetStore
from composition.store.landmarks import LandmarkChooser
from composition.store.projects import ProjectStore
from composition.store.prompt_index import PromptIndex
from composition.store.redis_version import require_redis_8
from composition.store.styles import StyleStore
from composition.store.tasks import TaskStore
from composition.store.kept import KeptStates
from composition.store.reuse import LatentLibrary
from composition.store.timings import TimingStore
from composition.store.variants import Variants
from composition.store.webhooks import WebhookStore
from config.composition import CompositionArgs
from config.families import GenerationDefaults
from config.settings import Settings, store_backoff
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES
from models.grid import check_grid, fit_size
from models.images import ACCEPTED_FORMATS
from models.types import AdapterInfo, Lora, check_distinct
from records.blobs import open_blobs


SOURCE_TYPES = frozenset(MEDIA_TYPES[fmt.lower()] for fmt in ACCEPTED_FORMATS)  # what a source image may be


@dataclass
class Services:
    redis: aioredis.Redis
    tasks: TaskStore
    assets: AssetStore
    prompt_index: PromptIndex
    variants: Variants
    styles: StyleStore
    projects: ProjectStore
    timings: TimingStore
    kept: KeptStates
    library: LatentLibrary
    landmarks: LandmarkChooser
    access: AccessStore
    webhooks: WebhookStore
    adapters: AdapterStore
    handles: dict[str, DeploymentHandle]
    defaults: dict[str, GenerationDefaults]
    args: CompositionArgs
    catalogue: Catalogue
    runner: DeploymentHandle | None = None
    signer: ContentSigner | None = None
    auth_required: bool = False
    app_name: str = "montage"
    family_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def handle(self, family: str) -> DeploymentHandle:
        """A family's deployment handle, or a 503 when that family is not deployed in this app."""
        if family not in self.handles:
            raise ApiError(503, "unavailable", f"model family {family} is not deployed", "model",
                           headers={"Retry-After": "60"})
        return self.handles[family]

    def defaults_of(self, family: str) -> GenerationDefaults:
        self.handle(family)
        return self.defaults[family]

    async def info(self, family: str) -> dict[str, Any]:
        """A family deployment's `info()` (model, source, size multiple), fetched once per replica."""
        if family not in self.family_info:
            self.family_info[family] = await self.handle(family).info.remote()
        return self.family_info[family]

    async def check_size(self, family: str, width: int, height: int, num_frames: int | None = None) -> None:
        """`InvalidRequest` naming the field when a size (or frame count) does not fit the family's latent grid or
        its pixel limit."""
        info = await self.info(family)
        check_grid(family, info["size_multiple"], info["frame_multiple"], width, height, num_frames)
        limit = self.defaults_of(family).max_pixels
        if limit and width * height > limit:
            raise InvalidRequest("width", f"{width}×{height} exceeds the {limit} pixels per frame {family} serves here")

    async def source_size(self, family: str, source: tuple[int | None, int | None] | None) -> tuple[int, int]:
        """The default size of a request made from a source image of (width, height): the source's own as the family
        can serve it (`fit_size`); the family's default size without a source, or for one of unknown size."""
        defaults = self.defaults_of(family)
        if not (source and all(source)):
            return defaults.width, defaults.height
        return fit_size(*source, (await self.info(family))["size_multiple"], defaults.max_pixels)

    async def check_loras(self, family: str, loras: list[Lora], field: str = "loras") -> list[AdapterInfo]:
        """Each adapter's catalogue entry; `InvalidRequest` naming the field when a request names more adapters than
        the family takes, one twice, or one its catalogue lacks or found unusable."""
        limit = self.defaults_of(family).max_loras
        if len(loras) > limit:
            raise InvalidRequest(field, f"at most {limit} adapters per request for {family}")
        check_distinct(loras, field)
        catalogue = await self.adapters.catalogue(family) if loras else {}
        for index, lora in enumerate(loras):
            if (info := catalogue.get(lora.id)) is None:
                raise InvalidRequest(f"{field}.{index}.id", f"unknown adapter {lora.id!r} for {family} "
                                                            "(GET /v1/adapters lists them)")
            if info.error:
                raise InvalidRequest(f"{field}.{index}.id", f"adapter {lora.id!r} does not fit {family}: {info.error}")
        return [catalogue[lora.id] for lora in loras]

    @property
    def watermark(self) -> bool:
        """Whether outputs carry the invisible watermark (with content credentials on)."""
        return self.signer is not None

    def recipe_view(self, recipe: Recipe) -> dict[str, Any]:
        """A recipe as the API shows it (provenance, replay) and its manifest holds it: the prompt and negative prompt
        only with `credentials.include_prompt` (prompts can be private)."""
        return recipe.manifest_data(self.args.credentials.include_prompt)

    async def put_generated(self, data: bytes, content_type: str, recipe: Recipe, owner: str = "",
                            size: tuple[int, int] | None = None, shared: bool = False,
                            source: tuple[bytes, str] | None = None, rendition_of: str | None = None) -> AssetInfo:
        """An output stored signed (content credentials on) with its recipe, for its provenance and replay; `source`
        (bytes, type) is what it was made from, its ingredient; `rendition_of` names the asset it re-encodes."""
        if self.signer is not None:
            data = await asyncio.to_thread(self.signer.sign, data, content_type, recipe, source)
        info = await self.assets.put(data, content_type, "generated", owner, size, shared)
        await self.assets.put_recipe(info.id, recipe.model_dump_json())
        if rendition_of is None:
            return info
        return await self.assets.link_rendition(rendition_of, f"{recipe.format}:{recipe.quality}", info, owner, shared)

    # What a request names, or `NotFound` naming the field it came from.

    async def recipe(self, asset_id: str, field: str, user: str | None) -> Recipe:
        """The recipe of an asset `user` may read; `NotFound` naming `field` for an asset made elsewhere."""
        await self.asset(asset_id, field, user)
        if (found := await self.assets.recipe(asset_id)) is None:
            raise NotFound(f"recipe of asset {asset_id} (uploaded or made before content credentials)", field)
        return Recipe.model_validate_json(found)

    async def asset(self, asset_id: str, field: str, user: str | None) -> AssetInfo:
        if (info := await self.assets.info(asset_id, user)) is None:
            raise NotFound(f"asset {asset_id}", field)
        return info

    async def image_asset(self, asset_id: str, field: str, user: str | None) -> AssetInfo:
        """An asset that is a still image the models decode (PNG, JPEG, WEBP): `InvalidRequest` naming the field for
        another kind (a video, its GIF, a JSON export)."""
        info = await self.asset(asset_id, field, user)
        if info.content_type not in SOURCE_TYPES:
            raise InvalidRequest(field, f"asset {asset_id} is {info.content_type}, not a PNG, JPEG or WEBP image")
        return info

    async def asset_bytes(self, asset_id: str, field: str, user: str | None) -> bytes:
        if (data := await self.assets.read(asset_id, user)) is None:
            raise NotFound(f"asset {asset_id}", field)
        return data

    async def style(self, soul_id: str, field: str = "soul_id") -> Style:
        if (style := await self.styles.get(soul_id)) is None:
            raise NotFound(f"style of soul {soul_id}", field)
        return style

    async def project(self, project_id: str, owner: str | None) -> Project:
        if (project := await self.projects.get(project_id, owner)) is None:
            raise NotFound(f"project {project_id}", "project_id")
        return project


STORE_RETRIES = 3


def build_services(args: CompositionArgs, redis_url: str, handles: dict[str, DeploymentHandle],
                   defaults: dict[str, GenerationDefaults], runner: DeploymentHandle | None = None,
                   app_name: str = "montage") -> Services:
    require_redis_8(redis_url)
    retry = Retry(store_backoff(), STORE_RETRIES)
    client = aioredis.Redis.from_url(redis_url, health_check_interval=10, retry=retry)
    auth_required = (args.access.auth or Settings().auth) == "required"
    return Services(
        redis=client,
        tasks=TaskStore(client, task_ttl_s=args.task_ttl_s, idempotency_ttl_s=args.idempotency_ttl_s),
        assets=AssetStore(client, open_blobs(args.asset_store), private=auth_required),
        prompt_index=PromptIndex(client, index_ttl_s=args.dedup.index_ttl_days * 86400),
        variants=Variants(client),
        styles=StyleStore(client),
        projects=ProjectStore(client),
        timings=TimingStore(client),
        kept=KeptStates(client, args.task_ttl_s),
        library=LatentLibrary(client, args.reuse),
        landmarks=LandmarkChooser(client),
        access=AccessStore(client),
        webhooks=WebhookStore(client, args.task_ttl_s),
        adapters=AdapterStore(client),
        handles=handles,
        defaults=defaults,
        args=args,
        catalogue=load_catalogue(),
        runner=runner,
        signer=ContentSigner(load_chain(args.credentials), args.credentials.include_prompt,
                             signing_hook(args.credentials.signer))
        if args.credentials.enabled else None,
        auth_required=auth_required,
        app_name=app_name,
    )
