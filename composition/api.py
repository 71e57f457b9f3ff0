"""The FastAPI app factory: routers, error envelope, and the replica's services on `app.state`."""
from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from composition import errors
from composition.auth import authenticate
from composition.limits import JsonLimits
from composition.metrics import RequestMetrics
from composition.routers import (
    adapters,
    assets,
    health,
    images,
    openai_images,
    openai_videos,
    projects,
    prompts,
    provenance,
    selfies,
    session,
    settings,
    souls,
    storyboards,
    styles,
    system,
    tasks,
    videos,
    web,
    writing,
)
from composition.schemas.common import ERROR_RESPONSES
from composition.schemas.openai_images import OPENAI_ERROR_RESPONSES
from composition.services import Services
from composition.workflows.registry import Workflows

ROUTERS = (images, prompts, videos, souls, selfies, storyboards, writing, styles, projects, assets, tasks, health,
           settings, adapters, session, provenance)


def create_api(services: Services, workflows: Workflows) -> FastAPI:
    api = routes()
    api.add_middleware(JsonLimits, max_bytes=services.args.max_json_bytes, max_depth=services.args.max_json_depth)
    api.add_middleware(RequestMetrics)  # outermost: refused bodies are counted too
    api.state.services = services
    api.state.workflows = workflows
    return api


def routes() -> FastAPI:
    """The app's routes and error mapping, without a replica's services: what `/openapi.json` documents."""
    # /docs and /redoc from packaged Swagger UI and ReDoc assets: they work without a network
    api = FastAPIOffline(title="Montage", version=system.VERSION,
                         description="Generative media on Ray Serve: images, edits, videos, variants, selfies, "
                                     "storyboards; OpenAI's Images and Videos APIs under /openai/v1.")
    errors.install(api)
    api.include_router(system.router)
    api.include_router(web.router)
    for module in ROUTERS:
        api.include_router(module.router, dependencies=[Depends(authenticate)], responses=ERROR_RESPONSES)
    for module in (openai_images, openai_videos):
        api.include_router(module.router, dependencies=[Depends(authenticate)], responses=OPENAI_ERROR_RESPONSES)
    return api

