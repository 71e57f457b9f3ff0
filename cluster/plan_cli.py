"""`montage plan [config]`: check a serve config's GPU placement and print the plan."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cluster.placement import Plan, PlanError, gpu_spec, plan
from config.app import AppArgs

APP_NAME = "montage"


def app_args(serve_config: Mapping[str, Any]) -> AppArgs:
    """The validated `args:` of the montage application in a `serve run` config."""
    apps = serve_config.get("applications") or []
    app = next((a for a in apps if a.get("name") == APP_NAME), apps[0] if len(apps) == 1 else None)
    if app is None:
        raise ValueError(f"no application named {APP_NAME!r} in the serve config")
    return AppArgs.model_validate(app.get("args") or {})


def render(result: Plan) -> str:
    """A table of families, then the total and headroom line."""
    header = ("family", "source", "replicas", "GiB/replica", "GPU share", "GPU index", "ranks")
    rows = [header] + [
        (f.name, f.source.value, str(f.replicas), f"{f.memory_gib:.2f}" + ("" if f.declared else " (est)"),
         f"{f.num_gpus:.2f}", ",".join(map(str, f.gpus)) or "-",
         "1" if f.ranks == 1 else f"{f.ranks} (GiB and share per rank)")
        for f in result.families
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    gpu = result.gpu
    loads = ", ".join(f"GPU{load.index} {load.memory_gib:.1f} GiB / share {load.share:.2f}" for load in result.loads)
    lines += [
        f"per GPU: {loads}",
        f"total {result.total_gib:.1f} GiB of {result.capacity_gib:g} GiB ({gpu.count} × {gpu.name}): headroom "
        f"{result.headroom_gib:.1f} GiB ({result.headroom_fraction:.1%}, required {result.headroom:.0%})",
    ]
    return "\n".join(lines)


def main_plan(config_path: str, gpu: str = "h200") -> int:
    """Plan `config_path` on `gpu` (e.g. h200, h200x8): 0 and the table, or 2 and why not."""
    try:
        args = app_args(yaml.safe_load(Path(config_path).read_text()) or {})
        result = plan(args, gpu_spec(gpu))
    except PlanError as error:
        print(f"plan refused for {config_path} on {gpu}: {error}")
        return 2
    except (ValueError, OSError, yaml.YAMLError) as error:
        print(f"cannot plan {config_path}: {error}")
        return 2
    print(f"{config_path} on {gpu}")
    print(render(result))
    return 0
