"""Webhook subscriptions and deliveries as the task record writes them: a task's subscriptions (`task:{id}:webhooks`)
turn its events into deliveries (`webhook:{id}`, listed on `task:{id}:deliveries`, due on `webhooks:due`) inside
the same atomic scripts that change the task, so no event that ends or advances a task is lost between the two."""
from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel

from config import keys

WebhookEvent = Literal["succeeded", "failed", "cancelled", "progress"]
TERMINAL_EVENTS: list[WebhookEvent] = ["succeeded", "failed", "cancelled"]
MILESTONES = (0.25, 0.5, 0.75)  # `progress` subscribers hear each stage pass these


class Subscription(BaseModel):
    """Who is told about a task's events: where, which events, for which user, signed with which API key's secret
    (the sha256 of the key; empty: the server's secret)."""

    url: str
    events: list[WebhookEvent]
    user_id: str = ""
    key: str = ""

    @property
    def id(self) -> str:
        """The same request subscribing again (a retry, an Idempotency-Key) is the same subscription."""
        return hashlib.sha256(self.model_dump_json(exclude={"key"}).encode()).hexdigest()[:16]


def delivery_keys(task_id: str) -> list[str]:
    """KEYS of the scripts below for one task: its subscriptions, its deliveries, the due set."""
    return [keys.task_webhooks(task_id), keys.task_deliveries(task_id), keys.webhooks_due()]


NOTIFY = """
-- notify(task, subscriptions, deliveries, due, delivery prefix, now, filter, event, occasion, data): a delivery of
-- `event` to every subscription whose events include `filter`. Its id derives from the task, the event, its
-- occasion (a stage's milestone) and the subscription, so an event met again (a retried stage) is sent once.
local function notify(task, subs, list, due, prefix, now, filter, event, occasion, data)
  local task_id = redis.call('HGET', task, 'id')
  local all = redis.call('HGETALL', subs)
  for i = 1, #all, 2 do
    local sub = cjson.decode(all[i + 1])
    for _, wanted in ipairs(sub.events) do
      if wanted == filter then
        local digest = redis.sha1hex(task_id .. '|' .. event .. '|' .. occasion .. '|' .. all[i])
        local id = 'msg_' .. string.sub(digest, 1, 32)
        if redis.call('EXISTS', prefix .. id) == 0 then
          redis.call('HSET', prefix .. id, 'id', id, 'task_id', task_id, 'subscription', all[i], 'url', sub.url,
            'key', sub.key, 'event', event, 'data', data, 'created_at', now, 'attempts', 0, 'status', 'pending')
          redis.call('RPUSH', list, id)
          redis.call('ZADD', due, now, id)
        end
      end
    end
  end
end

-- ended(task, subscriptions, deliveries, due, prefix, now, ttl): the task's end (task.succeeded with its result,
-- task.failed with its error, task.cancelled) to its subscribers; its subscriptions then expire with it.
local function ended(task, subs, list, due, prefix, now, ttl)
  if redis.call('EXISTS', subs) == 0 then return end
  local f = redis.call('HMGET', task, 'id', 'kind', 'status', 'result', 'error')
  local data = '{"id":' .. cjson.encode(f[1]) .. ',"kind":' .. cjson.encode(f[2]) .. ',"status":"' .. f[3] .. '"'
  if f[3] == 'succeeded' and f[4] then data = data .. ',"result":' .. f[4] end
  if f[3] == 'failed' and f[5] then data = data .. ',"error":' .. f[5] end
  notify(task, subs, list, due, prefix, now, f[3], 'task.' .. f[3], '', data .. '}')
  redis.call('EXPIRE', subs, ttl)
  redis.call('EXPIRE', list, ttl)
end

-- milestones(task, subscriptions, deliveries, due, prefix, now, progress, stage, scope): task.progress for each
-- milestone the scope (the stage, or the whole task) has reached, with the model step that reached it; one EXISTS
-- for a task nobody subscribed to.
local function milestones(task, subs, list, due, prefix, now, progress, stage, scope)
  if redis.call('EXISTS', subs) == 0 then return end
  local f = redis.call('HMGET', task, 'id', 'kind', 'step', 'steps')
  local head = '{"id":' .. cjson.encode(f[1]) .. ',"kind":' .. cjson.encode(f[2])
    .. ',"status":"running","stage":' .. cjson.encode(stage)
  if f[3] then head = head .. ',"step":' .. f[3] .. ',"steps":' .. f[4] end
  for _, m in ipairs({""" + ", ".join(map(str, MILESTONES)) + """}) do
    if tonumber(progress) >= m then
      notify(task, subs, list, due, prefix, now, 'progress', 'task.progress', scope .. '@' .. m,
        head .. ',"progress":' .. m .. '}')
    end
  end
end
"""

SUBSCRIBE = NOTIFY + """
-- KEYS: task, subscriptions, deliveries, due; ARGV: subscription id, subscription JSON, delivery prefix, now, ttl.
-- A subscription joins a live task; one that comes after the task ended gets its end at once. 0: no such task.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if status ~= 'queued' and status ~= 'running' then
  ended(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
end
return 1
"""


def subscribe_args(task_id: str, subscription: Subscription, now: float, ttl_s: int) -> dict[str, list[Any]]:
    """keys and args of `SUBSCRIBE`."""
    return {"keys": [keys.task(task_id), *delivery_keys(task_id)],
            "args": [subscription.id, subscription.model_dump_json(), keys.webhook(""), now, ttl_s]}
