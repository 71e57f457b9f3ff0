"""Wraps the family deployment classes into Ray Serve applications, names and options from the specs and config."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from ray import serve
from ray.serve.deployment import Application

from config.app import AppArgs, DeploymentOptions, FamilyDeployment
from config.composition import AssetStoreArgs
from config.specs import SPECS


def bind(cls: type, name: str, options: DeploymentOptions | FamilyDeployment,
         *init_args: object) -> Application:
    return serve.deployment(cls, name=name, **options.ray_options()).bind(*init_args)


def bind_family(key: str, family: FamilyDeployment, redis_url: str | None,
                assets: AssetStoreArgs | None = None) -> Application:
    """Family `key`'s deployment class under its Serve deployment name, with its options and args (and the app's
    asset store, where uploaded adapters are)."""
    spec = SPECS[key]
    return bind(spec.deployment_class, spec.deployment_name, family, family.args, redis_url, assets)


def bind_families(args: AppArgs, redis_url: str | None) -> dict[str, Application]:
    """One bound deployment per enabled family, keyed like AppArgs (llm, sdxl, flux, svd, wan, embedder)."""
    return {key: bind_family(key, family, redis_url, args.composition.asset_store)
            for key, family in args.families().items()}


class SingleFamilyArgs(BaseModel):
    """Args of an app that serves one family alone (import path `deployments.builder:build_family_app`)."""

    model_config = ConfigDict(extra="forbid")

    family: Literal[tuple(SPECS)]
    deployment: FamilyDeployment
    redis_url: str | None = None

    @field_validator("deployment", mode="before")
    @classmethod
    def _of_the_family(cls, value: Any, info: ValidationInfo) -> Any:
        family = info.data.get("family")
        return FamilyDeployment[SPECS[family].args].model_validate(value) if family else value


def build_family_app(args: dict) -> Application:
    single = SingleFamilyArgs.model_validate(args)
    return bind_family(single.family, single.deployment, single.redis_url)
