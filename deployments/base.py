"""What every model deployment shares: jobs, grouped execution, metadata, progress, health, reconfigure."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.app import Batching
from config.composition import AssetStoreArgs
from config.families import FamilyArgs
from deployments.adapters import AdapterHosting
from deployments.admission import Admission
from deployments.gang import build_model
from deployments.metrics import deployment_metrics
from deployments.replica import log_cancellations_as_info, memory, replica_name, serve_is_stopping
from deployments.scheduler import StepScheduler, Ticket
from deployments.steps import GroupSteps, restored
from records.checkpoints import job_digest
from models.family import group_by
from models.steps import StepState
from models.types import AdapterInfo
from records.adapters import AdapterRecords
from records.blobs import open_blobs
from records.checkpoints import Checkpoints
from records.tasks import Cancelled, ProgressReporter

BATCH_DEFAULTS = dict(max_batch_size=4, batch_wait_timeout_s=0.05)  # replaced by user_config at start
CONCURRENT_BATCHES = 4  # groups a diffusion replica runs at once (more with a larger step batch: `group_slots`)


@dataclass
class LiveJob:
    """What the task record says of a queued job: its lane, user and tier weight (scheduling) and its newest
    checkpoint."""

    lane: str | None = None
    user: str | None = None
    weight: float = 1.0
    state: StepState | None = None
    digest: str = ""  # its model request's, which names its checkpoint (none for a family without steps)


@dataclass
class Job:
    """One request as it waits in a batch queue."""

    request: Any
    task_id: str | None = None
    arrived: float = field(default_factory=time.monotonic)
    live: LiveJob | None = None  # what its task record said at admission

    def queued_ms(self, started: float) -> float:
        """How long it waited (batch queue, then the step scheduler) before it first held the device."""
        return (started - self.arrived) * 1000.0


def _step_of(state: StepState | None) -> int:
    return state.step if state is not None else 0


class AdmittedMethod:
    """A diffusion family's operation queue, assigned as `_<operation>` on its deployment class: each replica's own
    `Admission` (deployments/admission.py: fair admission, then `execute` over compatible groups), made on first use
    with the replica's `group_slots` and Serve's batching knobs. The family's `group_key` forms the groups."""

    def __init__(self, operation: str, stage: str) -> None:
        self.operation, self.stage = operation, stage

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, replica: ModelDeployment | None, owner: type | None = None) -> Any:
        if replica is None:
            return self

        async def run(jobs: list[Job]) -> list:
            return await replica.execute(jobs, self.operation, self.stage)

        queue = replica.__dict__[self.name] = Admission(run, replica.model.group_key, replica.group_slots,
                                                        **BATCH_DEFAULTS)
        return queue


# The family args that set how fast its engine runs, as far as a family has them (shown by /v1/info)
ENGINE = {"dtype", "compile", "cuda_graphs", "quantize", "step_cache", "slots"}


class ModelDeployment:
    """Base class of the family deployments: the model of the args' family (`config.specs`), its batch queues (the
    `@serve.batch` or `AdmittedMethod` class attributes), progress, health and reconfigure."""

    def __init__(self, args: FamilyArgs, redis_url: str | None = None, assets: AssetStoreArgs | None = None) -> None:
        """Serve routes no request to a replica before its constructor returns, so a compiled model warms up here.
        `assets`: the app's asset store (uploaded adapters' bytes); None: the environment's."""
        log_cancellations_as_info()
        model, self.gang = build_model(args)
        model.warmup()
        self.model = model
        self.progress = ProgressReporter(redis_url or os.environ.get("REDIS_URL"))
        self.checkpoints = Checkpoints(self.progress.client)
        self.policy = getattr(args, "steps", None)  # a diffusion family's StepPolicy
        self.scheduler = StepScheduler(self.policy.turn_ms / 1000.0, self.policy.step_batch) if self.policy else None
        self.replica = replica_name()
        self.unhealthy_reason: str | None = None
        bank = getattr(model, "adapters", None)
        self.adapters = AdapterHosting(bank, AdapterRecords(self.progress.client), self.replica,
                                       open_blobs(assets or AssetStoreArgs())) if bank else None
        if self.adapters:
            self.adapters.publish()

    @property
    def group_slots(self) -> int:
        """Groups this replica runs at once: `CONCURRENT_BATCHES`, or enough for a full step batch of one-request
        groups (jobs of different step counts never share a group, yet join one turn) plus the slot admission keeps
        for another user."""
        return max(CONCURRENT_BATCHES, self.policy.step_batch + 1 if self.policy else 0)

    async def submit(self, queue: Callable[[Job], Any], request: Any, task_id: str | None = None) -> Any:
        """Queues one request on a batch method, once the family validated it (`InvalidRequest`, its caller's alone)
        and its adapters are held; a cancelled task raises `Cancelled` to its caller only."""
        self.model.validate(request)
        if self.adapters:
            await self.adapters.hold(request)
        job = Job(request, task_id)
        if isinstance(queue, Admission):  # admitted by the job's lane and user
            [job.live] = await asyncio.to_thread(self._live_jobs, [job])
            result = await queue(job, job.live.lane, job.live.user, job.live.weight)
        else:
            result = await queue(job)
        if isinstance(result, Cancelled):
            raise result
        return result

    @classmethod
    def batch_methods(cls) -> list[str]:
        """Names of the batch queues (`@serve.batch` methods, admitted operations), sorted."""
        return [name for name in sorted(dir(cls))
                if isinstance(attr := getattr(cls, name), AdmittedMethod) or hasattr(attr, "set_max_batch_size")]

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies batch size and wait to every batch queue, without a restart."""
        batching = Batching.model_validate(user_config)
        for name in self.batch_methods():
            method = getattr(self, name)
            method.set_max_batch_size(batching.max_batch_size)
            method.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    def batching(self) -> dict[str, Any]:
        """What this replica applies: batch size and wait, and a diffusion family's step batch (continuous
        batching's cap on the requests of one denoiser forward)."""
        method = getattr(self, self.batch_methods()[0])
        applied = dict(max_batch_size=method._get_max_batch_size(),
                       batch_wait_timeout_s=method._get_batch_wait_timeout_s(), replica=self.replica)
        if self.scheduler:
            applied["step_batch"] = self.scheduler.batch_budget
        return applied

    async def check_health(self) -> None:
        if self.unhealthy_reason:
            raise RuntimeError(f"replica {self.replica} marked unhealthy: {self.unhealthy_reason}")
        self.model.check()
        if self.adapters:  # a new adapter file joins the catalogue; this replica's holding stays fresh
            await asyncio.to_thread(self.adapters.publish)

    async def check_adapter(self, adapter_id: str, data: bytes) -> AdapterInfo:
        """An adapter file's catalogue entry as this replica's model finds it (`error`: why it cannot be used)."""
        if not self.adapters:
            raise RuntimeError(f"{self.model.name} takes no LoRA adapters")
        return await self.adapters.check(adapter_id, data)

    def mark_unhealthy(self, reason: str) -> str:
        """Operator drain: the next health check fails and Serve replaces this replica; meanwhile every running job
        checkpoints at each step, so what Serve cuts off at the end of the graceful window resumes elsewhere."""
        self.unhealthy_reason = reason
        return self.replica

    def info(self) -> dict[str, Any]:
        info = dict(model=self.model.name, source=self.model.source.value, device=str(self.model.device),
                    replica=self.replica, size_multiple=self.model.size_multiple,
                    frame_multiple=self.model.frame_multiple, memory=memory(self.model.device),
                    engine=self.model.args.model_dump(include=ENGINE, mode="json"))
        if self.gang:  # one request over several ranks: each one's device and memory
            info["parallel"] = self.model.args.parallel.model_dump() | {"ranks": self.gang.info()}
        return info

    async def probe(self) -> dict[str, Any]:
        """Health warm-up: the family's smallest requests through this replica's own batch queues, timed."""
        started = time.monotonic()
        await self.probe_requests()
        return dict(replica=self.replica, ms=round((time.monotonic() - started) * 1000.0, 1))

    async def probe_requests(self) -> None:
        raise NotImplementedError

    async def execute(self, jobs: list[Job], operation: str, stage: str) -> list:
        """Runs one admitted group of valid jobs (one group key) off the event loop through the family's `run_group`,
        split by the step their checkpoints resume from (jobs saved at different steps run in different calls), and
        stamps each result with serving metadata. A diffusion family's calls run concurrently under the replica's
        step scheduler; other families' one after another."""
        found = await asyncio.to_thread(self._live_jobs, jobs)
        digests = [live.digest for live in found]
        groups = group_by(range(len(jobs)), lambda i: _step_of(found[i].state))
        runs = [self._group([jobs[i] for i in g], [digests[i] for i in g], [found[i] for i in g], operation, stage)
                for g in groups]
        outcomes = await asyncio.gather(*runs) if self.scheduler else [await one for one in runs]
        results: list[Any] = [None] * len(jobs)
        for indices, outputs in zip(groups, outcomes, strict=True):
            for index, output in zip(indices, outputs, strict=True):
                results[index] = output
        return results

    async def _group(self, candidates: list[Job], digests: list[str], found: list[LiveJob], operation: str,
                     stage: str) -> list:
        """One compatible group's results (a job cancelled while it waited in the batch queue costs no step)."""
        gone = await asyncio.to_thread(self.progress.cancelled, [job.task_id for job in candidates])
        results: list[Any] = [Cancelled(f"{stage} cancelled before it started")] * len(candidates)
        kept = [index for index, cancelled in enumerate(gone) if not cancelled]
        if not kept:
            return results
        group = [candidates[i] for i in kept]
        resume = [state for i in kept if (state := found[i].state) is not None] or None
        ticket = None
        if self.scheduler:
            fuse_key = self.model.fuse_key(group[0].request)
            lead = found[kept[0]]
            ticket = self.scheduler.ticket(lead.lane, lead.user, None if fuse_key is None else (stage, fuse_key),
                                           len(group), lead.weight)
        steps = GroupSteps([job.task_id for job in group], [digests[i] for i in kept], [found[i].lane for i in kept],
                           stage, self.policy, self.progress, self.checkpoints,
                           lambda: self.unhealthy_reason is not None, serve_is_stopping,
                           functools.partial(self.scheduler.boundary, ticket) if ticket else None,
                           functools.partial(self.scheduler.fused, ticket) if ticket else None,
                           [getattr(job.request, "seed", 0) for job in group])
        first_slot = [time.monotonic()]

        def begin() -> None:  # the group holds the device: its tasks' wait ends here, not at admission
            first_slot[0] = time.monotonic()
            self.progress.started([job.task_id for job in group], stage)

        try:
            outputs = await asyncio.to_thread(self._scheduled, ticket, operation, [job.request for job in group],
                                              steps.steps(resume), begin)
        except Cancelled as cancelled:  # only this group stops; the rest of the batch runs on
            outputs = [cancelled] * len(group)
        for index, job, output in zip(kept, group, outputs, strict=True):
            if not isinstance(output, Cancelled):
                output.metadata.replica = self.replica
                output.metadata.queue_ms = job.queued_ms(first_slot[0])
                output.metadata.resumed_from_step = resume[0].step if resume else None
                output.metadata.fused_requests = ticket.fused_requests if ticket else None
                output.metadata.gpu_seconds = round(ticket.device_s / len(group), 6) if ticket else None
            results[index] = output
        self._observe(group, first_slot[0], (time.monotonic() - first_slot[0]) * 1000.0)
        return results

    def _scheduled(self, ticket: Ticket | None, operation: str, requests: list, steps: Any,
                   begin: Callable[[], None]) -> list:
        """The family's `run_group` holding the device for each of its steps in turn (see `deployments.scheduler`);
        `begin` once it first holds it."""
        with self.scheduler.running(ticket) if self.scheduler and ticket else contextlib.nullcontext():
            begin()
            return self.model.run_group(operation, requests, steps)

    def _live_jobs(self, jobs: list[Job]) -> list[LiveJob]:
        """Each job's lane, user and checkpointed state, read once (at admission); nothing to read for a family
        without steps."""
        if self.policy is None:
            return [LiveJob()] * len(jobs)
        unread = [job for job in jobs if job.live is None]
        digests = [job_digest(job.request) for job in unread]
        found = self.checkpoints.load([(job.task_id, digest) for job, digest in zip(unread, digests, strict=True)])
        for job, digest, (lane, user, weight, data) in zip(unread, digests, found, strict=True):
            job.live = LiveJob(lane, user, weight, restored(data, job.task_id), digest)
        return [job.live for job in jobs]

    def _observe(self, group: list[Job], started: float, run_ms: float) -> None:
        tags = {"deployment": self.model.name}
        instruments = deployment_metrics()
        instruments.batch_size.observe(len(group), tags)
        instruments.run_ms.observe(run_ms, tags)
        if self.adapters:
            self.adapters.observe()
        for job in group:
            instruments.queue_ms.observe(job.queued_ms(started), tags)
        if self.model.device.type == "cuda":
            import torch

            instruments.gpu_memory.set(torch.cuda.memory_allocated(self.model.device), tags)
