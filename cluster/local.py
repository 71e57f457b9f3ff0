"""`montage up`: the embedded Redis (unless REDIS_URL is set), a local Ray head, then `serve run`."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from cluster.redis_server import EmbeddedRedis
from composition.store.redis_version import require_redis_8
from config.settings import Settings

log = logging.getLogger("montage.up")
VIRTUAL_GPUS = 1
METRICS_PORT = 8080
REDIS_PORT = 6380  # Ray's GCS takes 6379


def gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return out.stdout.count("GPU ") if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired):
        return 0


def ray_start_args(gpus: int) -> list[str]:
    """`ray start` for the local head; a CPU-only machine gets virtual GPUs so GPU shares still schedule."""
    args = ["ray", "start", "--head", "--disable-usage-stats", "--dashboard-host", "127.0.0.1",
            f"--metrics-export-port={METRICS_PORT}"]
    if gpus == 0:
        log.warning("no CUDA device: starting Ray with %d virtual GPU(s) so fractional placement schedules as on "
                    "a GPU node (models run on CPU)", VIRTUAL_GPUS)
        args.append(f"--num-gpus={VIRTUAL_GPUS}")
    return args


def up(config: str = "serve_config.yaml") -> int:
    settings = Settings()
    redis = None
    env = dict(os.environ)
    if settings.redis_url:
        try:
            require_redis_8(settings.redis_url)
        except RuntimeError as exc:
            log.error("%s", exc)
            return 1
    else:
        redis = EmbeddedRedis(settings.data_dir / "redis", port=REDIS_PORT).start()
        env["REDIS_URL"] = redis.url
        log.info("embedded Redis at %s (AOF in %s)", redis.url, redis.data_dir)
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "ray"), "stop", "--force"], capture_output=True)
    start = ray_start_args(gpu_count())
    try:
        subprocess.run([str(bin_dir / start[0]), *start[1:]], check=True, env=env)
        return subprocess.run([str(bin_dir / "serve"), "run", config], env={**env, "RAY_ADDRESS": "auto"}).returncode
    except KeyboardInterrupt:
        return 0
    finally:
        subprocess.run([str(bin_dir / "ray"), "stop"], capture_output=True)
        if redis:
            redis.stop()
