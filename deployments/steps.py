"""A batch group's step boundaries inside a model replica: progress and cancellation, checkpoints by the family's
policy, previews for the tasks that want them, and the drain: while an operator drains the replica every step is
checkpointed, and once Serve stops it (downscale, redeploy, replacement) its jobs checkpoint and are handed back."""
from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

from config.families import StepPolicy
from models.fusion import DenoiserCall
from models.steps import Boundary, Steps, StepState
from records.checkpoints import Checkpoints
from records.tasks import Cancelled, ProgressReporter

log = logging.getLogger("montage.steps")
NO_PREVIEW_LANE = "low"  # batch work: no previews


class HandedBack(RuntimeError):
    """Serve is stopping this replica: the group's jobs were checkpointed and go back to the runner, which retries
    them on another replica, from that step."""


def restored(data: bytes | None, task_id: str | None) -> StepState | None:
    """The state in a checkpoint, or None (none written, or unreadable: the job starts over)."""
    if data is None:
        return None
    try:
        return StepState.from_bytes(data)
    except Exception:  # a corrupt or foreign value must not fail the task
        log.exception("checkpoint of task %s unreadable; the job starts from step 0", task_id)
        return None


class GroupSteps:
    """What one pipeline call of `task_ids` does at each step boundary."""

    def __init__(self, task_ids: list[str | None], digests: list[str], lanes: list[str | None], stage: str,
                 policy: StepPolicy | None, progress: ProgressReporter, checkpoints: Checkpoints,
                 draining: Callable[[], bool], stopping: Callable[[], bool],
                 turn: Callable[[], None] | None = None,
                 denoise: Callable[[DenoiserCall], Any] | None = None, seeds: list[int] | None = None) -> None:
        self.task_ids = task_ids
        self.seeds = seeds or [0] * len(task_ids)  # name a job's kept states (a task's variants differ by seed)
        self.digests = digests
        self.previewed = [lane != NO_PREVIEW_LANE for lane in lanes]
        self.stage = stage
        self.policy = policy
        self.progress = progress
        self.checkpoints = checkpoints
        self.draining = draining
        self.stopping = stopping
        self.turn = turn  # the step scheduler's boundary: another call may run before this one's next step
        self.denoise = denoise  # the step scheduler's fusion: other calls' denoiser calls may join this one's
        self.last_checkpoint = time.monotonic()

    def steps(self, resume: list[StepState] | None) -> Steps:
        preview_every = self.policy.preview_every if self.policy and any(self.previewed) else 0
        return Steps(on_step=self.on_step, resume=resume, preview_every=preview_every, denoise=self.denoise)

    def on_step(self, boundary: Boundary) -> None:
        done, total, resumed_from = boundary.progress
        cancelled = [self.progress.report(task_id, done, total, self.stage, resumed_from, digest)
                     for task_id, digest in zip(self.task_ids, self.digests, strict=True)]
        if all(cancelled):
            raise Cancelled(f"{self.stage} cancelled at step {boundary.done}/{boundary.total}")
        if self._hand_back(boundary):
            self._checkpoint(boundary)
            raise HandedBack(f"replica stopping: {self.stage} handed back at step {boundary.done}/{boundary.total}")
        if self._checkpoint_due(boundary):
            self._checkpoint(boundary)
        if self.policy is not None and boundary.done in self.policy.kept_steps(boundary.total):
            self._keep(boundary)
        for task_id, wanted, image in zip(self.task_ids, self.previewed, boundary.previews()):
            if wanted:
                url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
                self.progress.preview(task_id, done, total, url)
        if self.turn is not None:
            self.turn()

    def _hand_back(self, boundary: Boundary) -> bool:
        """Serve is stopping the replica mid-job and every job is a task a runner retries (a caller of the handle
        itself would get the error: its job runs on through the graceful window instead)."""
        return (self.policy is not None and boundary.done < boundary.total
                and all(task_id is not None for task_id in self.task_ids) and self.stopping())

    def _checkpoint_due(self, boundary: Boundary) -> bool:
        policy = self.policy
        if policy is None or not (policy.checkpoints or self.draining()):
            return False
        return (boundary.done == boundary.total or self.draining()
                or (policy.checkpoint_every > 0 and boundary.done % policy.checkpoint_every == 0)
                or (policy.checkpoint_every_s is not None
                    and time.monotonic() - self.last_checkpoint >= policy.checkpoint_every_s))

    def _checkpoint(self, boundary: Boundary) -> None:
        self.last_checkpoint = time.monotonic()
        states = boundary.states()
        assert self.policy is not None
        for task_id, digest, state in zip(self.task_ids, self.digests, states, strict=True):
            if state.nbytes > self.policy.checkpoint_max_mb * 2**20:
                log.warning("step state of task %s is %.0f MB, over checkpoint_max_mb: not written", task_id,
                            state.nbytes / 2**20)
                continue
            self.checkpoints.save(task_id, digest, state.to_bytes(), boundary.done, self.policy.checkpoint_ttl_s)

    def _keep(self, boundary: Boundary) -> None:
        """Each task's state at this step, kept for forks (`StepPolicy.keep_steps`, `fork_ttl_s`)."""
        assert self.policy is not None
        for task_id, seed, state in zip(self.task_ids, self.seeds, boundary.states(), strict=True):
            if task_id is not None and state.nbytes <= self.policy.checkpoint_max_mb * 2**20:
                self.checkpoints.keep(task_id, seed, boundary.done, state.to_bytes(), self.policy.fork_ttl_s)
