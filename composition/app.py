"""The ingress deployment and `build_app`, the typed application builder used by serve configs."""
from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle

from composition.api import create_api
from composition.runner import TaskRunnerDeployment
from composition.services import build_services
from composition.workflows.registry import build_workflows
from config.app import AppArgs
from config.composition import CompositionArgs
from config.families import GenerationDefaults
from deployments.builder import bind, bind_families


@serve.ingress()
class Ingress:
    """HTTP in; the app is built per replica (no import-time singletons) over the family handles and Redis."""

    def __init__(self, handles: dict[str, DeploymentHandle], redis_url: str, composition: CompositionArgs,
                 defaults: dict[str, GenerationDefaults], runner: DeploymentHandle) -> None:
        self.services = build_services(composition, redis_url, handles, defaults, runner,
                                       serve.get_replica_context().app_name)
        self.workflows = build_workflows(self.services)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.services, self.workflows)


def build_app(args: dict[str, Any]) -> Application:
    """serve config `args:` → AppArgs → bound deployments → task runner → ingress."""
    app_args = AppArgs.model_validate(args or {})
    redis_url = app_args.redis_url or os.environ.get("REDIS_URL")
    if not redis_url:
        raise ValueError("redis_url: set REDIS_URL or the app's redis_url (`montage up` starts one)")
    handles = bind_families(app_args, redis_url)
    defaults = {key: family.args.defaults for key, family in app_args.families().items()}
    runner = bind(TaskRunnerDeployment, "TaskRunner", app_args.runner, handles, redis_url, app_args.composition,
                  defaults)
    return bind(Ingress, "Ingress", app_args.ingress, handles, redis_url, app_args.composition, defaults, runner)
