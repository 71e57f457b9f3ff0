"""Wraps the plain deployment classes into Ray Serve applications, options from validated config."""
from __future__ import annotations

from ray import serve
from ray.serve.deployment import Application

from config.app import AppArgs, DeploymentOptions
from deployments.families import DEPLOYMENTS


def bind(cls: type, name: str, options: DeploymentOptions, *init_args: object) -> Application:
    return serve.deployment(cls, name=name, **options.ray_options()).bind(*init_args)


def bind_families(args: AppArgs, redis_url: str | None) -> dict[str, Application]:
    """One bound deployment per enabled family, keyed like AppArgs (llm, sdxl, flux, svd, wan, embedder)."""
    return {
        key: bind(DEPLOYMENTS[key][1], DEPLOYMENTS[key][0], family.deployment, family.args, redis_url)
        for key, family in args.families().items()
    }
