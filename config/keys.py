"""Every Redis key Montage uses, in one place. All keys live under the `montage:` namespace.

| key | type | holds |
|---|---|---|
| task:{id} | hash | id, kind, status, stage, progress, span (a stage of a task of several parts), step, steps, preview (live only, bounded), request, result, error, user_id, lane, weight, attempts, timestamps, waiting_for, gpu_seconds |
| task:{id}:events | pub/sub channel | progress and status updates of one task (JSON), for waiters and SSE |
| task:{id}:steps | hash | a workflow's finished steps (scenes, keyframes, clips, ...), so a retried task resumes |
| task:{id}:checkpoints | hash | request digest → a denoising job's step state (safetensors), so a retried job resumes |
| task:{id}:parts | hash | job digest → its share of steps done, in the current stage of a task of several parts (a storyboard) |
| task:{id}:kept | hash | "{seed}:{step}" → a job's step state kept for forks (expires `fork_ttl_s` after its write) |
| task:{id}:webhooks | hash | subscription id → webhook subscription (JSON: url, events, user, signing key) |
| task:{id}:deliveries | list | the task's webhook delivery ids, in order |
| tasks:{lane} | stream | queued task ids, one stream per priority lane, consumer group `runners` |
| tasks:index, tasks:user:{user} | sorted set | task ids by creation time, all and per user |
| tasks:stats | hash | task count by status (kept by the transition scripts) |
| waiting:{family} | sorted set | running tasks waiting for a family's replicas, by when they began to wait |
| task:{id}:deleted | string | set when the task's video was deleted through OpenAI's Videos API (expires with it) |
| idempotency:{user}:{kind}:{key} | string | task id created for that Idempotency-Key and kind of task |
| flight:{digest} | string | task id rendering exactly that request (single-flight) |
| prompt:exact:{scope}:{digest} | string | prompt key of a normalised prompt within a scope |
| prompt:vectors:{scope} | vector set | prompt keys by embedding (HNSW, int8), the semantic candidates of a scope |
| prompt:recent | sorted set | indexed prompt keys by last use; those unused for `dedup.index_ttl_days` leave the index |
| prompt:{key} | hash | prompt, normalised text, scope, embedding (float32 bytes, while indexed), exact key, created_at |
| prompt:{key}:variants / :deliveries | sorted set | variant ids by creation time / by delivery count |
| prompt:{key}:seeds / :slots | hash | seed → variant id / reserved slot indices (pool size, for the cap) |
| prompt:{key}:rendering:{seed} | string | id of the task rendering that variant now (single flight; other tasks wait) |
| variant:{id} | hash | prompt_key, seed, asset_id, metadata, created_at |
| seen:{user} | set | variant ids a user has seen |
| recent:landmarks:{soul}:{user}:{city} | list | landmarks recently used for that soul/user/city |
| asset:{id} | hash | content type, bytes, width, height, kind, created_at, shared ("1": readable by all) |
| asset:{id}:owners | set | users who uploaded or generated it (with auth, only they read a private asset) |
| asset:{id}:renditions | hash | recipe ("webp:90") → the asset id of this image re-encoded so (output formats) |
| asset:{id}:recipe | string (JSON) | how a generated asset was made (content credentials, replay); a rendition names its parent |
| style:{soul} / styles | string (JSON) / set | style profiles |
| project:{id} / projects:{user} / project:{id}:tasks / project:{id}:assets | hash / sorted set / sets | projects |
| project_import:{user}:{digest} | string (JSON) | the project (and task id map) a user made from an archive with that sha256 |
| reuse:{family}:{prompt_key} | hash | step → a finished job's step state (safetensors): the latent library near-duplicates start from |
| reuse:{family}:lru / :sizes / :bytes | sorted set / hash / string | library entries by last use / bytes per entry / bytes in all (capped by `reuse.max_mb`) |
| timing:{family} | hash | decayed sums fitting model time to pixel-frame-steps, and the mean per request |
| apikey:{sha256} / apikeys / apikeys:{user} | hash / sorted sets | API keys (hashed): user, tier, created, revoked |
| session:{sha256} | string | the sha256 of the API key a web session cookie stands for (expires with the session) |
| quota:{user}:{kind}:{day} | string | tasks of a kind created that UTC day; kind `gpu_seconds`: device seconds used (expires after 2 days) |
| rate:{user} | hash | token bucket: tokens left and last refill time |
| webhook:{id} | hash | one webhook delivery: task, url, event, data, status, attempts, last status, next attempt |
| webhooks:due | sorted set | pending delivery ids by when they are next due (a sender leases one by moving it ahead) |
| webhooks:secret | string | the server's signing secret when none is configured (auth off) |
| adapters:{family} | hash | adapter id → its catalogue entry (JSON: source, rank, size, error), as replicas found it |
| adapters:{family}:uploads | hash | adapter id → an adapter uploaded over HTTP (catalogue entry JSON with its blob id) |
| adapters:{family}:replicas | hash | replica → the adapters it holds and its load, hit and eviction counts (JSON; each field expires) |
| config:lock | string | the token of the ingress request changing the Serve config now (`PATCH /v1/config`; expires) |
"""
from __future__ import annotations

PREFIX = "montage"
RUNNER_GROUP = "runners"


def _key(*parts: object) -> str:
    return ":".join((PREFIX, *map(str, parts)))


def task(task_id: str) -> str:
    return _key("task", task_id)


def task_events(task_id: str) -> str:
    return _key("task", task_id, "events")


def task_steps(task_id: str) -> str:
    return _key("task", task_id, "steps")


def task_checkpoints(task_id: str) -> str:
    return _key("task", task_id, "checkpoints")


def task_parts(task_id: str) -> str:
    return _key("task", task_id, "parts")


def task_kept(task_id: str) -> str:
    return _key("task", task_id, "kept")


def kept_seed(seed: int) -> str:
    """The prefix of a job's kept-state fields."""
    return f"{seed}:"


def kept_field(seed: int, step: int) -> str:
    return f"{kept_seed(seed)}{step}"


def task_webhooks(task_id: str) -> str:
    return _key("task", task_id, "webhooks")


def task_deliveries(task_id: str) -> str:
    return _key("task", task_id, "deliveries")


def reuse_entry(family: str, prompt_key: str = "") -> str:
    """A library entry (no prompt key: the prefix of its family's entries)."""
    return _key("reuse", family, prompt_key)


def reuse_lru(family: str) -> str:
    return _key("reuse", family, "lru")


def reuse_sizes(family: str) -> str:
    return _key("reuse", family, "sizes")


def reuse_bytes(family: str) -> str:
    return _key("reuse", family, "bytes")


def waiting(family: str) -> str:
    return _key("waiting", family)


def task_stream(lane: str) -> str:
    return _key("tasks", lane)


def task_index(user_id: str | None = None) -> str:
    return _key("tasks", "user", user_id) if user_id else _key("tasks", "index")


def task_stats() -> str:
    return _key("tasks", "stats")


def task_deleted(task_id: str) -> str:
    return _key("task", task_id, "deleted")


def idempotency(user_id: str, kind: str, key: str) -> str:
    return _key("idempotency", user_id, kind, key)


def flight(digest: str) -> str:
    return _key("flight", digest)


def prompt_exact(scope: str, digest: str) -> str:
    return _key("prompt", "exact", scope, digest)


def prompt_vectors(scope: str) -> str:
    return _key("prompt", "vectors", scope)


def prompt_recent() -> str:
    return _key("prompt", "recent")


def prompt(prompt_key: str) -> str:
    return _key("prompt", prompt_key)


def prompt_variants(prompt_key: str) -> str:
    return _key("prompt", prompt_key, "variants")


def prompt_deliveries(prompt_key: str) -> str:
    return _key("prompt", prompt_key, "deliveries")


def prompt_seeds(prompt_key: str) -> str:
    return _key("prompt", prompt_key, "seeds")


def prompt_slots(prompt_key: str) -> str:
    return _key("prompt", prompt_key, "slots")


def variant(variant_id: str) -> str:
    return _key("variant", variant_id)


def variant_render(prompt_key: str, seed: int) -> str:
    """The task rendering the variant of (prompt key, seed) now: other tasks that miss it wait for that one."""
    return _key("prompt", prompt_key, "rendering", seed)


def seen(user_id: str) -> str:
    return _key("seen", user_id)


def recent_landmarks(soul_id: str, user_id: str, city_key: str) -> str:
    return _key("recent", "landmarks", soul_id, user_id, city_key)


def asset(asset_id: str) -> str:
    return _key("asset", asset_id)


def asset_owners(asset_id: str) -> str:
    return _key("asset", asset_id, "owners")


def asset_renditions(asset_id: str) -> str:
    return _key("asset", asset_id, "renditions")


def asset_recipe(asset_id: str) -> str:
    return _key("asset", asset_id, "recipe")


def style(soul_id: str) -> str:
    return _key("style", soul_id)


def styles() -> str:
    return _key("styles")


def project(project_id: str) -> str:
    return _key("project", project_id)


def projects(user_id: str) -> str:
    return _key("projects", user_id)


def projects_index() -> str:
    """Every project, newest first: what GET /v1/projects lists without a user."""
    return _key("project_index")


def project_tasks(project_id: str) -> str:
    return _key("project", project_id, "tasks")


def project_assets(project_id: str) -> str:
    return _key("project", project_id, "assets")


def project_import(user_id: str, digest: str) -> str:
    return _key("project_import", user_id, digest)


def timing(family: str) -> str:
    return _key("timing", family)


def api_key(digest: str) -> str:
    return _key("apikey", digest)


def api_keys(user_id: str | None = None) -> str:
    return _key("apikeys", user_id) if user_id else _key("apikeys")


def session(digest: str) -> str:
    return _key("session", digest)


def quota(user_id: str, kind: str, day: str) -> str:
    return _key("quota", user_id, kind, day)


def rate(user_id: str) -> str:
    return _key("rate", user_id)


def webhook(delivery_id: str) -> str:
    return _key("webhook", delivery_id)


def webhooks_due() -> str:
    return _key("webhooks", "due")


def webhook_secret() -> str:
    return _key("webhooks", "secret")


def adapters(family: str) -> str:
    return _key("adapters", family)


def adapter_replicas(family: str) -> str:
    return _key("adapters", family, "replicas")


def adapter_uploads(family: str) -> str:
    return _key("adapters", family, "uploads")


def config_lock() -> str:
    return _key("config", "lock")
