"""Task runners: consume the task streams, run each task's workflow, heartbeat, and reclaim dead runners' tasks."""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

from composition.errors import STORE_DOWN, as_api_error, cause_of
from composition.metrics import service_metrics
from composition.services import Services, build_services
from composition.store.tasks import Entry
from composition.webhooks import WebhookSender
from composition.workflows.base import TaskCancelled, TaskContext, Workflow
from config.composition import CompositionArgs, RunnerArgs
from config.families import GenerationDefaults
from deployments.replica import replica_name
from records.tasks import Cancelled

log = logging.getLogger("montage.runner")
RETRY_BACKOFF_S = 1.0


class TaskRunner:
    """Runs up to `concurrency` tasks at once. At-least-once: an entry is acked only once its task is terminal."""

    def __init__(self, services: Services, workflows: dict[str, Workflow], args: RunnerArgs,
                 consumer: str | None = None) -> None:
        self.services = services
        self.workflows = workflows
        self.args = args
        self.consumer = consumer or f"{replica_name()}-{uuid.uuid4().hex[:6]}"
        self.active: dict[str, Entry] = {}
        self.last_reclaim = 0.0

    async def run(self) -> None:
        await self.services.tasks.ensure_groups()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while True:
                try:
                    await self._poll()
                except Exception:  # Redis down or similar: keep the loop alive, retry shortly
                    log.exception("runner poll failed")
                    await asyncio.sleep(1.0)
        finally:
            heartbeat.cancel()

    async def _poll(self) -> None:
        free = self.args.concurrency - len(self.active)
        if free <= 0:
            await asyncio.sleep(0.01)
            return
        entries: list[Entry] = []
        if time.monotonic() - self.last_reclaim > self.args.claim_idle_s / 2:
            self.last_reclaim = time.monotonic()
            entries = await self.services.tasks.reclaim(self.consumer, int(self.args.claim_idle_s * 1000), free)
            if entries:
                log.warning("reclaimed %d task(s) from dead runners", len(entries))
        if len(entries) < free:
            entries += await self.services.tasks.read(self.consumer, free - len(entries), self.args.block_ms)
        for entry in entries:
            if entry.task_id not in self.active:
                self.active[entry.task_id] = entry
                asyncio.create_task(self._execute(entry))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.args.heartbeat_s)
            try:
                await self.services.tasks.heartbeat(self.consumer, list(self.active.values()))
                for status, count in (await self.services.tasks.counts()).items():
                    service_metrics().tasks.set(count, {"status": status})
            except Exception:
                log.exception("heartbeat failed")

    async def _execute(self, entry: Entry) -> None:
        try:
            await self._attempts(entry.task_id)
            await self.services.tasks.ack(entry)
            await self._observe(entry.task_id)
        except Exception:  # Redis unreachable mid-task: leave the entry pending, it is reclaimed later
            log.exception("task %s left pending", entry.task_id)
        finally:
            self.active.pop(entry.task_id, None)

    async def _observe(self, task_id: str) -> None:
        record = await self.services.tasks.get(task_id)
        if record and record.terminal:
            tags = {"kind": record.kind, "status": record.status}
            service_metrics().tasks_finished.inc(1, tags)
            service_metrics().task_ms.observe((record.updated_at - record.created_at) * 1000.0, tags)

    async def _attempts(self, task_id: str) -> None:
        tasks = self.services.tasks
        while True:
            attempt = await tasks.start(task_id, self.args.max_attempts)
            if attempt == 0:
                return
            if attempt < 0:
                await tasks.fail(task_id, "retries_exhausted", f"gave up after {self.args.max_attempts} attempts")
                return
            record = await tasks.get(task_id)
            try:
                workflow = self.workflows[record.kind]
                job = workflow.job_type.model_validate(record.request)
                ctx = TaskContext(task_id, record.user_id, self.services, record.tier, workflow.shares)
                result = await workflow.run(ctx, job)
            except (TaskCancelled, Cancelled):
                return
            except STORE_DOWN:
                raise  # not the task's fault: its entry stays pending and is reclaimed once Redis is back
            except Exception as exc:
                if (error := as_api_error(exc)) is not None:  # the request's own fault, as the ingress answers it
                    await tasks.fail(task_id, error.code, error.message, error.field, error.status)
                    return
                cause = cause_of(exc)  # a server failure (a library's ValueError included): logged and retried
                log.warning("task %s attempt %d failed", task_id, attempt, exc_info=cause)
                if attempt >= self.args.max_attempts:
                    await tasks.fail(task_id, "internal", f"failed after {attempt} attempts: {type(cause).__name__}")
                    return
                await asyncio.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))  # time for a replica to come back
                continue
            if await tasks.succeed(task_id, result) and record.project_id:
                await self.services.projects.add_result(record.project_id, result)
            return


class TaskRunnerDeployment:
    """The Serve deployment around a `TaskRunner` and a `WebhookSender`; runner args come through `user_config`."""

    def __init__(self, handles: dict, redis_url: str, composition: CompositionArgs,
                 defaults: dict[str, GenerationDefaults]) -> None:
        from composition.workflows.registry import build_workflows

        self.services = build_services(composition, redis_url, handles, defaults)
        self.runner = TaskRunner(self.services, build_workflows(self.services).by_kind(), RunnerArgs())
        self.sender = WebhookSender(self.services)
        self.loops: list[asyncio.Task] = []

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.runner.args = RunnerArgs.model_validate(user_config)
        if not self.loops:
            loop = asyncio.get_running_loop()
            self.loops = [loop.create_task(self.runner.run()), loop.create_task(self.sender.run())]

    async def check_health(self) -> None:
        if any(loop.done() for loop in self.loops):
            raise RuntimeError("task runner or webhook sender loop stopped")

    async def status(self) -> dict[str, Any]:
        return {"consumer": self.runner.consumer, "pid": os.getpid(), "active": len(self.runner.active),
                "concurrency": self.runner.args.concurrency}
