"""Runtime batching settings (GET/PATCH /v1/config): read from the Serve controller and changed through the app's
own declarative config, as `serve deploy` would, so Serve calls `reconfigure` on every replica, running and future,
without a restart or a rebuild (only `user_config` changes)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from composition.errors import Conflict
from composition.schemas.common import Body
from config.specs import SPECS
from models.errors import InvalidRequest

FamilyKey = Literal[tuple(SPECS)]  # "llm", "sdxl", ...


class BatchingPatch(Body):
    max_batch_size: int | None = Field(default=None, ge=1, le=256)
    batch_wait_timeout_s: float | None = Field(default=None, ge=0.0, le=10.0)


class ConfigPatch(Body):
    deployments: dict[FamilyKey, BatchingPatch] = Field(description="family → the batching settings to change")


class DeploymentSettings(BaseModel):
    deployment: str
    max_batch_size: int
    batch_wait_timeout_s: float
    max_ongoing_requests: int
    replicas: int
    applied: dict[str, Any] | None = Field(default=None, description="what one running replica uses now")


class RuntimeConfig(BaseModel):
    app: str
    deployments: dict[str, DeploymentSettings]


def _client():
    from ray.serve.context import _get_global_client

    return _get_global_client()


def _app_details(app: str) -> tuple[dict[str, Any], dict[str, Any]]:
    details = _client().get_serve_details()
    return details, details["applications"][app]


def deployed_configs(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each Serve app's own declarative config (app → config, with earlier runtime changes), from the controller's
    `details`."""
    configs = {name: entry.get("deployed_app_config") for name, entry in details["applications"].items()}
    if any(config is None for config in configs.values()):
        raise Conflict(None, "the Serve apps were not deployed from a config file (serve run/deploy), so their "
                             "settings cannot change at runtime")
    return configs


def redeploy(details: dict[str, Any], configs: dict[str, dict[str, Any]], app: str,
             overrides: dict[str, dict[str, Any]]) -> None:
    """Deploys `configs` again with `overrides` (deployment name → fields) set in `app`'s deployment entries, as
    `serve deploy` would: Serve applies each changed deployment alone (a new `user_config` reconfigures its replicas,
    new actor options replace them)."""
    from ray.serve.schema import ServeDeploySchema

    entries = {entry["name"]: entry for entry in configs[app].setdefault("deployments", [])}
    for name, fields in overrides.items():
        entries.setdefault(name, {"name": name}).update(fields)
    configs[app]["deployments"] = list(entries.values())
    _client().deploy_apps(ServeDeploySchema.model_validate(dict(
        applications=list(configs.values()), proxy_location=details["proxy_location"],
        http_options=details["http_options"])))


def read(app: str, names: dict[str, str]) -> RuntimeConfig:
    """The target batching of each family deployment (family → deployment name), as the controller holds it."""
    _, found = _app_details(app)
    settings = {}
    for family, name in names.items():
        deployment = found["deployments"][name]
        config = deployment["deployment_config"]
        settings[family] = DeploymentSettings(deployment=name, max_ongoing_requests=config["max_ongoing_requests"],
                                              replicas=len(deployment.get("replicas", [])), **config["user_config"])
    return RuntimeConfig(app=app, deployments=settings)


def apply(app: str, names: dict[str, str], patch: ConfigPatch) -> dict[str, dict[str, Any]]:
    """Merges `patch` into the deployments' `user_config` and redeploys the app's config with it; the new
    `user_config` of each patched family."""
    details, found = _app_details(app)
    configs = deployed_configs(details)
    targets, overrides = {}, {}
    for family, change in patch.deployments.items():
        name = names.get(family)
        if name is None:
            raise InvalidRequest(f"deployments.{family}", "not deployed in this app")
        deployment = found["deployments"][name]["deployment_config"]
        merged = deployment["user_config"] | change.model_dump(exclude_none=True)
        if merged["max_batch_size"] > deployment["max_ongoing_requests"]:
            field = f"deployments.{family}.max_batch_size"
            raise InvalidRequest(field, f"above the deployment's max_ongoing_requests "
                                        f"({deployment['max_ongoing_requests']}), batches would never fill")
        overrides[name] = {"user_config": merged}
        targets[family] = merged
    redeploy(details, configs, app, overrides)
    return targets


def settled(config: RuntimeConfig, targets: dict[str, dict[str, Any]]) -> bool:
    """The controller holds every target (it takes the new config a moment after `apply`)."""
    return all(config.deployments[family].model_dump(include=set(target)) == target
               for family, target in targets.items())
