"""The task record: one Redis hash per task, owned here (its fields as the API shows them: `task_record.py`). Its
atomic transitions (start, finish, stage and progress, waiting for a model), the events it publishes and its
cancellation are written only through this module: by the composition layer's task store and by the model replicas'
progress reporter alike."""
from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

import redis
from redis.retry import Retry

from config import keys
from config.settings import store_backoff
from records.task_record import Preview
from records.webhooks import NOTIFY, delivery_keys

PREVIEW_MAX_CHARS = 128 * 1024  # a larger preview (data URL) is not kept on the record, only sent on SSE


class Span(NamedTuple):
    """A stage of a task of several parts (a storyboard's scenes): its share of the whole task's progress, from
    `start` to `end`, and how many of its `parts` are done."""

    start: float
    end: float
    parts: int
    done: int

    @classmethod
    def of(cls, shares: dict[str, float], stage: str, done: int, parts: int) -> Span:
        """The span of `stage` in a workflow's `shares` (stage → its share of the whole, in the order they run)."""
        names = list(shares)
        start = sum(shares[name] for name in names[:names.index(stage)])
        return cls(start, start + shares[stage], max(parts, 1), done)

    def __str__(self) -> str:
        return f"{self.start:.4f} {self.end:.4f} {self.parts} {self.done}"


def end_wait(prefix: str) -> str:
    """Lua: the task (KEYS[1]) no longer waits for a model's replicas, nor for another task's render; `prefix` is the
    Lua expression holding the waiting-set key prefix."""
    return f"""
local waited = redis.call('HGET', KEYS[1], 'waiting_for')
if waited then
  redis.call('ZREM', {prefix} .. waited, redis.call('HGET', KEYS[1], 'id'))
  redis.call('HDEL', KEYS[1], 'waiting_for')
end
redis.call('HDEL', KEYS[1], 'rendered_by')
"""


LIVE_UPDATE = NOTIFY + """
-- KEYS: task, events channel, webhook subscriptions, deliveries, due, parts; ARGV: progress, stage, now, event JSON,
-- waiting-set key prefix, delivery key prefix, step, steps ('' for an update that is no model step: a new stage,
-- which has neither, nor a preview yet), span (a workflow's stage of a task of several parts, "from to parts done":
-- the stage's share of the whole task's progress and its parts done; '' for any other update), part (the job whose
-- step this is). Only a queued or running task changes, so a late step never moves a cancelled or finished task's
-- stage back; a task that was waiting for a model's replicas is not any more; its webhook subscribers hear the
-- stage's progress milestones. A task with a span keeps its workflow's stage through its parts' model work, and its
-- progress is the whole task's, never going back: the stage's share times its parts done (as its workflow counts
-- them, or as their steps are, whichever is more) and the steps done of those still running, over its parts; its
-- subscribers hear the whole task's milestones.
-- Returns the status.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  local progress, stage, event = ARGV[1], ARGV[2], ARGV[4]
  local pattern = '^(%S+) (%S+) (%S+) (%S+)$'
  local span = redis.call('HGET', KEYS[1], 'span')
  local from, to, parts, done = string.match(span or '', pattern)
  if ARGV[9] ~= '' then
    local new = {string.match(ARGV[9], pattern)}
    if new[1] ~= from or new[2] ~= to then
      redis.call('DEL', KEYS[6])  -- a new stage: new parts
      done = new[4]
    elseif tonumber(new[4]) > tonumber(done) then
      done = new[4]  -- else a count of parts done that arrived late: the larger stays
    end
    from, to, parts = new[1], new[2], new[3]
    span = table.concat({from, to, parts, done}, ' ')
    redis.call('HSET', KEYS[1], 'span', span)
  end
  if span then
    if ARGV[7] ~= '' and ARGV[10] ~= '' then
      redis.call('HSET', KEYS[6], ARGV[10], tonumber(ARGV[7]) / math.max(tonumber(ARGV[8]), 1))
    end
    if ARGV[9] == '' then stage = redis.call('HGET', KEYS[1], 'stage') end
    local stepped, running = 0, 0  -- the parts whose steps are all done, and the steps done of the others
    for _, share in ipairs(redis.call('HVALS', KEYS[6])) do
      if tonumber(share) >= 1 then stepped = stepped + 1 else running = running + tonumber(share) end
    end
    local share = math.min(1, (math.max(tonumber(done), stepped) + running) / tonumber(parts))
    local whole = math.floor((tonumber(from) + (tonumber(to) - tonumber(from)) * share) * 10000 + 0.5) / 10000
    progress = math.max(tonumber(redis.call('HGET', KEYS[1], 'progress') or '0'), whole)
    local fields = cjson.decode(event)
    fields.progress, fields.stage = progress, stage
    event = cjson.encode(fields)
  end
  redis.call('HSET', KEYS[1], 'progress', progress, 'stage', stage, 'updated_at', ARGV[3])
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[1], 'step', ARGV[7], 'steps', ARGV[8])
  else
    redis.call('HDEL', KEYS[1], 'step', 'steps', 'preview')
  end
""" + end_wait("ARGV[5]") + """
  redis.call('PUBLISH', KEYS[2], event)
  milestones(KEYS[1], KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[3], progress, stage, span and 'task' or stage)
end
return status
"""

CREATE = """
-- KEYS: task, stream, index, user index, stats, idempotency, project tasks, flight
-- ARGV: id, kind, request, user, lane, now, project, idempotency ttl, task ttl, task key prefix, fingerprint, weight,
--   tier
if KEYS[6] ~= '' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {existing, 0} end
end
if KEYS[8] ~= '' then
  local running = redis.call('GET', KEYS[8])
  if running then
    local status = redis.call('HGET', ARGV[10] .. running, 'status')
    if status == 'queued' or status == 'running' then
      redis.call('ZADD', KEYS[4], ARGV[6], running)  -- a joiner sees the shared task among its own
      return {running, 0}
    end
  end
  redis.call('SET', KEYS[8], ARGV[1], 'EX', ARGV[9])
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'request', ARGV[3], 'user_id', ARGV[4],
  'lane', ARGV[5], 'status', 'queued', 'stage', 'queued', 'progress', 0, 'attempts', 0,
  'created_at', ARGV[6], 'updated_at', ARGV[6], 'project_id', ARGV[7], 'fingerprint', ARGV[11], 'weight', ARGV[12],
  'tier', ARGV[13])
redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
if KEYS[6] ~= '' then redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[8]) end
if KEYS[7] ~= '' then redis.call('SADD', KEYS[7], ARGV[1]) end
return {ARGV[1], 1}
"""

START = """
-- KEYS: task, stats; ARGV: now, max attempts. Returns the attempt number, 0 to skip, -1 when exhausted.
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[2]) then return -1 end
if status == 'queued' then
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  redis.call('HINCRBY', KEYS[2], 'running', 1)
end
redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', ARGV[1], 'started_at', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

FINISH = NOTIFY + """
-- KEYS: task, stats, events, checkpoints, webhook subscriptions, deliveries, due, parts; ARGV: status, field, value,
-- now, ttl, allowed previous statuses (csv), waiting prefix, delivery prefix. The task's step checkpoints, preview
-- and parts go with it; its webhook subscribers are told.
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not string.find(',' .. ARGV[6] .. ',', ',' .. status .. ',', 1, true) then return 0 end
redis.call('HINCRBY', KEYS[2], status, -1)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'stage', ARGV[1], 'updated_at', ARGV[4])
""" + end_wait("ARGV[7]") + """
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[1] == 'succeeded' then redis.call('HSET', KEYS[1], 'progress', 1) end
redis.call('HDEL', KEYS[1], 'preview', 'span')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[4], KEYS[8])
ended(KEYS[1], KEYS[5], KEYS[6], KEYS[7], ARGV[8], ARGV[4], ARGV[5])
redis.call('PUBLISH', KEYS[3], cjson.encode({id = redis.call('HGET', KEYS[1], 'id'), status = ARGV[1]}))
return 1
"""

RESTORE = """
-- KEYS: task, index, user index, project tasks; ARGV: id, created_at, ttl, then field, value pairs. A finished task
-- from a project archive, unless its id is taken here (0); it expires as a finished task does.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""


WAIT_FOR = """
-- KEYS: task, events, waiting set; ARGV: family, now, id, estimated model ms ('' when unknown). Only a running task
-- waits: stage "waiting" at 0, or a task of several parts (a span: LIVE_UPDATE) in its own stage and progress.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local stage, progress = 'waiting', 0
if redis.call('HEXISTS', KEYS[1], 'span') == 1 then
  local kept = redis.call('HMGET', KEYS[1], 'stage', 'progress')
  stage, progress = kept[1], tonumber(kept[2] or '0')
end
redis.call('HSET', KEYS[1], 'stage', stage, 'progress', progress, 'waiting_for', ARGV[1], 'updated_at', ARGV[2],
  'estimate_ms', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('PUBLISH', KEYS[2], cjson.encode({id = ARGV[3], stage = stage, progress = progress,
  waiting_for = ARGV[1], updated_at = tonumber(ARGV[2])}))
return 1
"""

WAIT_ON = """
-- KEYS: task, events; ARGV: the task rendering what this one waits for, now, id. Only a running task waits: stage
-- "waiting" at 0, its record showing that task's model work (TaskStore.get).
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'stage', 'waiting', 'progress', 0, 'rendered_by', ARGV[1], 'updated_at', ARGV[2])
redis.call('PUBLISH', KEYS[2], cjson.encode({id = ARGV[3], stage = 'waiting', progress = 0, rendered_by = ARGV[1],
  updated_at = tonumber(ARGV[2])}))
return 1
"""


def live_update(task_id: str, progress: float, stage: str, step: tuple[int, int] | None = None,
                span: Span | None = None, part: str = "", **event: Any) -> tuple[list[str], list[Any]]:
    """(keys, args) of `LIVE_UPDATE` for one task: a model `step` (done, total) of its job `part`, or a new stage (of
    a task of several parts: with its `span`); `event` adds fields to its published event only."""
    update = {"progress": round(progress, 4), "stage": stage, "updated_at": time.time()}
    at = {"step": step[0], "steps": step[1]} if step else {}
    return ([keys.task(task_id), keys.task_events(task_id), *delivery_keys(task_id), keys.task_parts(task_id)],
            [*update.values(), json.dumps({"id": task_id, **update, **at, **event}), keys.waiting(""),
             keys.webhook(""), *(step or ("", "")), str(span) if span else "", part])


PREVIEW = """
-- KEYS: task, events channel; ARGV: preview JSON ('' when too large to keep), event JSON. A live task keeps its
-- newest preview (a finished one has its result, and FINISH drops it) and publishes it.
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'preview') else redis.call('HSET', KEYS[1], 'preview', ARGV[1]) end
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""


class Cancelled(Exception):
    """Every task of a running group was cancelled: the pipeline stops at this step."""


class ProgressReporter:
    """Writes `progress` (0..1) and `stage` to the task hash, publishes the same as JSON, reads cancellation."""

    def __init__(self, redis_url: str | None) -> None:
        self.client = redis.Redis.from_url(redis_url, retry=Retry(store_backoff(), 2)) if redis_url else None
        self._update = self.client.register_script(LIVE_UPDATE) if self.client else None
        self._preview = self.client.register_script(PREVIEW) if self.client else None

    def report(self, task_id: str | None, done: int, total: int, stage: str, resumed_from: int = 0,
               part: str = "") -> bool:
        """Records one step of the task's job `part` (its event says `step` of `steps`, and `resumed_from_step` when
        the job resumed from a checkpoint); True when the task has been cancelled meanwhile."""
        if self.client is None or task_id is None:
            return False
        event: dict[str, Any] = {"resumed_from_step": resumed_from} if resumed_from else {}
        try:
            status = self._update(*live_update(task_id, done / max(total, 1), stage, (done, total), part=part,
                                               **event))
        except (redis.ConnectionError, redis.TimeoutError):  # progress is best effort: Redis restarting
            return False
        return status == b"cancelled"

    def preview(self, task_id: str | None, step: int, total: int, image: str) -> None:
        """Publishes a `preview` event (`image` a JPEG data URL) and keeps it on the live task's record, unless it is
        over `PREVIEW_MAX_CHARS` (best effort, like `report`)."""
        if self.client is None or task_id is None:
            return
        preview = Preview(step=step, steps=total, image=image)
        kept = preview.model_dump_json() if len(image) <= PREVIEW_MAX_CHARS else ""
        event = json.dumps({"id": task_id, "event": "preview", **preview.model_dump()})
        try:
            self._preview(keys=[keys.task(task_id), keys.task_events(task_id)], args=[kept, event])
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    def text(self, task_id: str | None, text: str) -> None:
        """Publishes a `text` event: the answer an LLM job has decoded so far (best effort, like `report`)."""
        if self.client is None or task_id is None:
            return
        try:
            self.client.publish(keys.task_events(task_id), json.dumps({"id": task_id, "event": "text", "text": text}))
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    def started(self, task_ids: list[str | None], stage: str) -> None:
        """The model work of these tasks begins: their wait for a replica ends (best effort, like `report`)."""
        known = [task_id for task_id in task_ids if task_id is not None]
        if self.client is None or not known:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id in known:
            self._update(*live_update(task_id, 0.0, stage), client=pipe)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    def cancelled(self, task_ids: list[str | None]) -> list[bool]:
        """Which of these tasks are cancelled already, in one round trip (best effort, like `report`)."""
        known = [task_id for task_id in task_ids if task_id is not None]
        if self.client is None or not known:
            return [False] * len(task_ids)
        pipe = self.client.pipeline(transaction=False)
        for task_id in known:
            pipe.hget(keys.task(task_id), "status")
        try:
            status = dict(zip(known, pipe.execute(), strict=True))
        except (redis.ConnectionError, redis.TimeoutError):
            return [False] * len(task_ids)
        return [status.get(task_id) == b"cancelled" for task_id in task_ids]
