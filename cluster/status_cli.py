"""`montage status`: deployments, replicas (running, and the autoscaling range) and GPU shares from the running Serve
controller, and Redis."""
from __future__ import annotations

from typing import Any

import redis

from cluster.keys_cli import redis_url
from config import keys
from config.parallel import ParallelLayout
from config.specs import SPECS


def gang_ranks(app_args: dict[str, Any]) -> dict[str, int]:
    """Each family deployment's ranks per replica, from the application's args (`parallel`; Serve's details do not
    carry placement-group bundles): 1 without a layout."""
    ranks = {}
    for key, spec in SPECS.items():
        layout = ((app_args.get(key) or {}).get("args") or {}).get("parallel")
        ranks[spec.deployment_name] = ParallelLayout.model_validate(layout).degree if layout else 1
    return ranks


def collect() -> list[dict[str, Any]]:
    """One row per deployment of every Serve application (call with Ray connected). Serve's client of this process,
    not a new one: a new client would orphan the handles the old one caches, which `serve.shutdown` would then leave
    running."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    rows = []
    for app_name, app in details.get("applications", {}).items():
        ranks = gang_ranks((app.get("deployed_app_config") or {}).get("args") or {})
        for name, deployment in app.get("deployments", {}).items():
            config = deployment.get("deployment_config") or {}
            actor = config.get("ray_actor_options") or {}
            scaling = config.get("autoscaling_config") or {}
            replicas = deployment.get("replicas") or []
            status = deployment.get("status")
            rows.append({"app": app_name, "deployment": name, "status": str(getattr(status, "value", status)),
                         "replicas": sum(r.get("state") == "RUNNING" for r in replicas),
                         "min_replicas": scaling.get("min_replicas", config.get("num_replicas")),
                         "max_replicas": scaling.get("max_replicas", config.get("num_replicas")),
                         "num_gpus": actor.get("num_gpus", 0) or 0, "num_cpus": actor.get("num_cpus", 0) or 0,
                         "ranks": ranks.get(name, 1)})
    return rows


def redis_summary(url: str) -> str:
    try:
        client = redis.Redis.from_url(url, socket_timeout=3)
        info = client.info("server")
        counts = {k.decode(): int(v) for k, v in client.hgetall(keys.task_stats()).items()}
        return f"Redis {info['redis_version']} at {url}: tasks {counts or 'none yet'}"
    except redis.RedisError as exc:
        return f"Redis at {url}: unreachable ({type(exc).__name__})"


def used(row: dict[str, Any]) -> float:
    """GPUs a deployment's running replicas hold: a gang replica holds `num_gpus` for each of its ranks."""
    return row["num_gpus"] * row["replicas"] * row["ranks"]


def render(rows: list[dict[str, Any]]) -> str:
    header = (f"{'app':<10}{'deployment':<14}{'status':<12}{'replicas':>9}{'autoscaling':>13}{'ranks':>7}"
              f"{'GPU share':>11}{'GPUs used':>11}")
    lines = [header]
    for row in rows:
        scaling = f"{row['min_replicas']}-{row['max_replicas']}"
        lines.append(f"{row['app']:<10}{row['deployment']:<14}{row['status']:<12}{row['replicas']:>9}{scaling:>13}"
                     f"{row['ranks']:>7}{row['num_gpus']:>11.2f}{used(row):>11.2f}")
    lines.append(f"GPU in use: {sum(map(used, rows)):.2f}")
    return "\n".join(lines)


def main_status() -> int:
    import ray

    try:
        ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    except ConnectionError:
        print("no Ray cluster running here: start one with `make run` (montage up)")
        return 1
    print(render(collect()))
    print(redis_summary(redis_url()))
    return 0
