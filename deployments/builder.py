"""Wraps the plain deployment classes into Ray Serve applications, options from validated config."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator
from ray import serve
from ray.serve.deployment import Application

from config.app import AppArgs, DeploymentOptions, FamilyDeployment
from deployments.families import DEPLOYMENTS


def bind(cls: type, name: str, options: DeploymentOptions, *init_args: object) -> Application:
    return serve.deployment(cls, name=name, **options.ray_options()).bind(*init_args)


def bind_families(args: AppArgs, redis_url: str | None) -> dict[str, Application]:
    """One bound deployment per enabled family, keyed like AppArgs (llm, sdxl, flux, svd, wan, embedder)."""
    return {
        key: bind(DEPLOYMENTS[key][1], DEPLOYMENTS[key][0], family.deployment, family.args, redis_url)
        for key, family in args.families().items()
    }


class SingleFamilyArgs(BaseModel):
    """Args of an app that serves one family alone (import path `deployments.builder:build_family_app`)."""

    model_config = ConfigDict(extra="forbid")

    family: str
    deployment: FamilyDeployment
    redis_url: str | None = None

    @model_validator(mode="after")
    def _known(self) -> SingleFamilyArgs:
        if self.family not in DEPLOYMENTS:
            raise ValueError(f"family must be one of {sorted(DEPLOYMENTS)}")
        args_type = AppArgs.model_fields[self.family].annotation
        self.deployment = args_type.model_validate(self.deployment.model_dump())
        return self


def build_family_app(args: dict) -> Application:
    spec = SingleFamilyArgs.model_validate(args)
    name, cls = DEPLOYMENTS[spec.family]
    return bind(cls, name, spec.deployment.deployment, spec.deployment.args, spec.redis_url)
