"""Application args: `serve_config.yaml` `args:` → this model → `build_app(args)`."""
from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from config.composition import CompositionArgs, RunnerArgs
from config.families import FamilyArgs
from config.specs import SPECS

A = TypeVar("A", bound=FamilyArgs)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Autoscaling(_Strict):
    """Ray Serve autoscaling_config for one deployment."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=4.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=60.0, ge=0)
    metrics_interval_s: float = Field(default=2.0, gt=0)
    look_back_period_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling: min_replicas must not exceed max_replicas")
        return self


class Batching(_Strict):
    """Dynamic batching, applied through `user_config` → `reconfigure` (no restart)."""

    max_batch_size: int = Field(default=4, ge=1, le=256)
    batch_wait_timeout_s: float = Field(default=0.05, ge=0.0, le=10.0)


class DeploymentOptions(_Strict):
    """Placement, concurrency, scaling and health options of one deployment."""

    num_gpus: float = Field(default=0.0, ge=0.0,
                            description="GPU share per replica (fraction of one GPU or whole GPUs)")
    num_cpus: float = Field(default=1.0, ge=0.0)
    memory_gib: float | None = Field(
        default=None, gt=0,
        description="GPU memory per replica for the planner: GiB, a full batch and the CUDA context")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources, e.g. node labels")
    max_ongoing_requests: int = Field(default=16, ge=1)
    max_queued_requests: int = Field(default=-1, ge=-1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    batching: Batching | None = Field(default_factory=Batching, description="None: not a batching deployment")
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> DeploymentOptions:
        if self.batching and self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError("max_ongoing_requests must be >= batching.max_batch_size, or batches never fill")
        if self.num_gpus > 1 and not float(self.num_gpus).is_integer():
            raise ValueError("num_gpus above 1 must be a whole number")
        return self

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments for `serve.deployment(...)`."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            actor["resources"] = dict(self.resources)
        options: dict[str, Any] = dict(
            ray_actor_options=actor,
            max_ongoing_requests=self.max_ongoing_requests,
            max_queued_requests=self.max_queued_requests,
            autoscaling_config=self.autoscaling.model_dump(exclude_none=True),
            health_check_period_s=self.health_check_period_s,
            health_check_timeout_s=self.health_check_timeout_s,
            graceful_shutdown_timeout_s=self.graceful_shutdown_timeout_s,
        )
        if self.batching:
            options["user_config"] = self.batching.model_dump()
        return options


class IngressOptions(DeploymentOptions):
    """The HTTP ingress: no batch queues, so no user_config."""

    batching: None = None
    max_ongoing_requests: int = Field(default=256, ge=1)


class RunnerOptions(DeploymentOptions):
    """The task-runner deployment: consumes the task streams and runs workflows."""

    batching: None = None
    num_cpus: float = Field(default=0.1, ge=0.0)
    max_ongoing_requests: int = Field(default=16, ge=1)
    runner: RunnerArgs = Field(default_factory=RunnerArgs)

    def ray_options(self) -> dict[str, Any]:
        options = super().ray_options()
        options["user_config"] = self.runner.model_dump()
        return options


class FamilyDeployment(_Strict, Generic[A]):
    """One family: its model args and its deployment options."""

    enabled: bool = True
    args: A
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)

    @model_validator(mode="after")
    def _whole_gpus_per_rank(self) -> FamilyDeployment:
        if self.degree > 1 and self.deployment.num_gpus not in (0.0, 1.0):
            raise ValueError(f"deployment.num_gpus: a gang of {self.degree} ranks (args.parallel) takes one whole GPU "
                             f"per rank (1), or none (0: gloo on the CPU), got {self.deployment.num_gpus:g}")
        if self.degree > 1 and self.deployment.num_gpus == 0 and self.args.device not in ("cpu", "auto"):
            raise ValueError(f"args.device: {self.args.device} needs deployment.num_gpus: 1 for its gang's ranks")
        if self.degree > 1 and self.deployment.num_gpus == 1 and self.args.device == "cpu":
            raise ValueError("deployment.num_gpus: a gang on the CPU (args.device: cpu) takes 0 GPUs")
        return self

    @property
    def degree(self) -> int:
        """Ranks one replica owns (args.parallel; 1 for a family without a layout)."""
        layout = getattr(self.args, "parallel", None)
        return layout.degree if layout else 1

    def ray_options(self) -> dict[str, Any]:
        """`serve.deployment(...)` keyword arguments: a gang replica gets a placement group of one bundle per rank,
        the replica itself in the first."""
        options = self.deployment.ray_options()
        if self.degree > 1:
            bundle = {"CPU": self.deployment.num_cpus, **({"GPU": 1.0} if self.deployment.num_gpus else {}),
                      **self.deployment.resources}
            options["placement_group_bundles"] = [dict(bundle) for _ in range(self.degree)]
            options["placement_group_strategy"] = self.args.parallel.placement
        return options


def _family(args: type[A]) -> Any:
    return Field(default_factory=lambda: FamilyDeployment[args](args=args()))


_Families = create_model("_Families", __base__=_Strict, **{
    key: (FamilyDeployment[spec.args], _family(spec.args)) for key, spec in SPECS.items()})


class AppArgs(_Families):
    """Everything `build_app` needs: a `{enabled, args, deployment}` field per family of `config.specs.SPECS`, in its
    order (`llm`, `sdxl`, ...), then the ingress, the runner and composition; each deployment gets only its own."""

    ingress: IngressOptions = Field(default_factory=IngressOptions)
    runner: RunnerOptions = Field(default_factory=RunnerOptions)
    composition: CompositionArgs = Field(default_factory=CompositionArgs)
    redis_url: str | None = Field(default=None, description="None: the REDIS_URL environment variable")

    def families(self) -> dict[str, FamilyDeployment]:
        """Enabled families by registry key."""
        return {key: getattr(self, key) for key in SPECS if getattr(self, key).enabled}
