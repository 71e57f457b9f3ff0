"""`montage up`: the embedded Redis (unless REDIS_URL is set), a local Ray head, then `serve run`.

Ray 2.60 turns token authentication on for a head whose user has a token (~/.ray/auth_token: any local `ray.init()`
writes one), and Ray's CLI and dashboard then need the token. `montage up` makes it explicit: the head runs with
`RAY_AUTH_MODE=token` (a token is generated on first use) and prints how to reach the dashboard and `serve status`;
`RAY_AUTH_MODE=disabled` is the local mode without a token."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cluster.redis_server import EmbeddedRedis
from composition.store.redis_version import require_redis_8
from config.settings import Settings

log = logging.getLogger("montage.up")
VIRTUAL_GPUS = 1
METRICS_PORT = 8080
DASHBOARD = "http://127.0.0.1:8265"
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


def ray_auth_mode(environ: Mapping[str, str]) -> str:
    """Ray's authentication for the local head: "token" unless the user asked for `RAY_AUTH_MODE=disabled`."""
    return "disabled" if environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled" else "token"


def auth_token(bin_dir: Path, env: Mapping[str, str]) -> str:
    """Ray's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), generated there on first use."""
    found = subprocess.run([str(bin_dir / "ray"), "get-auth-token", "--generate"], capture_output=True, text=True,
                           check=True, env=dict(env))
    return found.stdout.strip()


def access_help(mode: str, token: str | None, bin_dir: Path, dashboard: str = DASHBOARD) -> str:
    """What `montage up` prints: how to open the dashboard and run Ray's CLI against this head."""
    relative = os.path.relpath(bin_dir)
    shown = bin_dir if relative.startswith("..") else Path(relative)
    if mode == "disabled":
        return (f"Ray dashboard: {dashboard} (token authentication disabled: RAY_AUTH_MODE=disabled)\n"
                f"Ray's CLI needs no token: {shown / 'serve'} status")
    return (f"Ray dashboard: {dashboard}: paste this token into its 'Authentication Token Required' dialog\n"
            f"    {token}\n"
            f"({shown / 'ray'} get-auth-token prints it again.) Ray's CLI sends it once RAY_AUTH_MODE=token is set:\n"
            f"    export RAY_AUTH_MODE=token && {shown / 'serve'} status\n"
            "Local mode without a token: RAY_AUTH_MODE=disabled make run")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(config: str = "serve_config.yaml") -> int:
    # SIGTERM (and SIGINT, which a shell's background job ignores) stop `serve run`, Ray and the embedded Redis.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    env["RAY_AUTH_MODE"] = mode = ray_auth_mode(env)
    try:
        token = auth_token(bin_dir, env) if mode == "token" else None
        subprocess.run([str(bin_dir / start[0]), *start[1:]], check=True, env=env)
        print(f"\n{access_help(mode, token, bin_dir)}\n", flush=True)
        return subprocess.run([str(bin_dir / "serve"), "run", config], env={**env, "RAY_ADDRESS": "auto"}).returncode
    except KeyboardInterrupt:
        return 0
    finally:
        subprocess.run([str(bin_dir / "ray"), "stop"], capture_output=True)
        if redis:
            redis.stop()
