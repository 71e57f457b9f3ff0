"""`montage up`: the embedded Redis (unless REDIS_URL is set), a local Ray head, then `serve run`.

It starts nothing while another Ray cluster runs on this machine or one of its ports is taken (it says what to do and
exits 1), and waits up to `SETTLE_S` for the processes of a Ray session that is ending. Its children run in sessions
of their own: a signal to its process group (Ctrl-C, a supervisor's SIGTERM, SIGHUP) reaches `montage up` alone,
which stops `serve run`, then the Ray head (`ray start --block`, whose processes die with it), then Redis, on every
path, and the kernel stops them if `montage up` itself is killed.

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
import time
from collections.abc import Mapping
from pathlib import Path

import yaml

from cluster.processes import describe, listeners, live_gcs, ray_processes, session_of, spawn, stop
from cluster.redis_server import EmbeddedRedis
from composition.store.redis_version import require_redis_8
from config.settings import Settings

log = logging.getLogger("montage.up")
VIRTUAL_GPUS = 1
METRICS_PORT = 8080
GCS_PORT = 6379
DASHBOARD_PORT = 8265
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
REDIS_PORT = 6380  # Ray's GCS takes 6379
SETTLE_S = 30.0  # the longest wait for the processes of an ending Ray session
HEAD_READY_S = 120.0
HEAD_BLOCKING = "will now block forever"  # what `ray start --block` prints once the head runs
AGAIN = "then run `make run` (montage up) again"


def gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return out.stdout.count("GPU ") if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired):
        return 0


def ray_start_args(gpus: int) -> list[str]:
    """`ray start` for the local head; a CPU-only machine gets virtual GPUs so GPU shares still schedule."""
    args = ["ray", "start", "--head", "--block", "--disable-usage-stats", f"--port={GCS_PORT}", "--dashboard-host",
            "127.0.0.1", f"--dashboard-port={DASHBOARD_PORT}", f"--metrics-export-port={METRICS_PORT}"]
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


def ports(config: str, embedded_redis: bool) -> dict[int, str]:
    """The ports `montage up` listens on, each with what listens there."""
    http = ((yaml.safe_load(Path(config).read_text()) or {}).get("http_options") or {}).get("port", 8000)
    found = {GCS_PORT: "Ray's GCS", DASHBOARD_PORT: "Ray's dashboard", METRICS_PORT: "Ray's metrics",
             http: "Serve's HTTP proxy"}
    if embedded_redis:
        found[REDIS_PORT] = "the embedded Redis"
    return found


def obstacle(needed: Mapping[int, str], settle_s: float = SETTLE_S) -> str | None:
    """None once no Ray runs on this machine and `needed` ports are free; else what is in the way and what to do.
    A running cluster or a port that something other than Ray holds is refused at once; the processes of a Ray
    session that is ending (a test run's, a `ray stop` under way) are waited for, up to `settle_s`."""
    deadline = time.monotonic() + settle_s
    waiting = False
    while True:
        ray = ray_processes()
        gcs = live_gcs(ray)
        if gcs:
            return (f"another Ray cluster runs on this machine (GCS {describe(gcs.pid)}, {session_of(gcs)}): stop it "
                    f"(`ray stop` if `ray start` started it, else end the program that runs it, e.g. a test run), "
                    f"{AGAIN}")
        ours = {process.pid for process in ray}
        taken = {port: pid for port, pid in listeners(needed).items() if pid not in ours}
        if taken:
            held = "; ".join(f"port {port} ({needed[port]}) is taken by {describe(pid)}" for port, pid in taken.items())
            return f"{held}: stop it, {AGAIN}"
        if not ray:
            return None
        if time.monotonic() > deadline:
            pids = " ".join(str(process.pid) for process in ray)
            return (f"{len(ray)} processes of an ended Ray session still run after {settle_s:.0f}s: `kill {pids}`, "
                    f"{AGAIN}")
        if not waiting:
            log.info("waiting up to %.0fs for %d processes of an ending Ray session to exit", settle_s, len(ray))
            waiting = True
        time.sleep(0.5)


def wait_for_head(head: subprocess.Popen, output: Path, timeout_s: float = HEAD_READY_S) -> None:
    """Returns once `ray start --block` runs the head; raises RuntimeError with its output if it exits first."""
    deadline = time.monotonic() + timeout_s
    while HEAD_BLOCKING not in output.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {head.returncode}" if head.returncode is not None else f"ran {timeout_s:.0f}s"
            raise RuntimeError(f"`ray start` {state} (output in {output}):\n{output.read_text()[-3000:]}")
        time.sleep(0.2)


def credentials_chain(config: str) -> str | None:
    """What signs outputs, per the serve config's `composition.credentials`: the development chain is generated here
    on first use (so it exists before any replica starts); None with credentials off. Raises ValueError naming the
    field of a bad setting (a missing or expired certificate)."""
    from pydantic import ValidationError

    from composition.credentials.chain import dev_folder, load_chain, signing_hook
    from config.composition import CredentialsArgs

    applications = (yaml.safe_load(Path(config).read_text()) or {}).get("applications") or [{}]
    given = ((applications[0].get("args") or {}).get("composition") or {}).get("credentials") or {}
    try:
        args = CredentialsArgs.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(map(str, ("composition", "credentials", *error["loc"])))
        raise ValueError(f"{field}: {error['msg']}") from None
    if not args.enabled:
        return None
    load_chain(args)
    signing_hook(args.signer)  # a hook that does not import fails here, naming credentials.signer
    if args.cert is not None:
        return f"content credentials: outputs signed with {args.cert}" + (f" by {args.signer}" if args.signer else "")
    folder = dev_folder()
    return (f"content credentials: outputs signed with the development chain in {folder} (trust {folder}/root.pem "
            "to verify them; set composition.credentials.cert and .key for your own)")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(config: str = "serve_config.yaml") -> int:
    for stopping in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stopping, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not Path(config).is_file():
        log.error("no serve config at %s: name one, e.g. `montage up serve_config.yaml`", config)
        return 2
    settings = Settings()
    env = dict(os.environ)
    if settings.redis_url:
        try:
            require_redis_8(settings.redis_url)
        except RuntimeError as exc:
            log.error("%s", exc)
            return 1
    try:
        signing = credentials_chain(config)
    except ValueError as exc:
        log.error("montage up started nothing: %s", exc)
        return 1
    if signing:
        log.info("%s", signing)
    blocked = obstacle(ports(config, embedded_redis=not settings.redis_url))
    if blocked:
        log.error("montage up started nothing: %s", blocked)
        return 1
    bin_dir = Path(sys.executable).parent
    redis = None if settings.redis_url else EmbeddedRedis(settings.data_dir / "redis", port=REDIS_PORT)
    head = serve = None
    try:
        if redis:
            env["REDIS_URL"] = redis.start().url
            log.info("embedded Redis at %s (AOF in %s)", redis.url, redis.data_dir)
        start = ray_start_args(gpu_count())
        env["RAY_AUTH_MODE"] = mode = ray_auth_mode(env)
        token = auth_token(bin_dir, env) if mode == "token" else None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        output = settings.data_dir / "ray-head.log"
        with output.open("w") as sink:
            head = spawn([str(bin_dir / start[0]), *start[1:]], env=env, stdout=sink, stderr=subprocess.STDOUT)
        wait_for_head(head, output)
        print(f"\nRay head started (its output: {output})\n{access_help(mode, token, bin_dir)}\n", flush=True)
        serve = spawn([str(bin_dir / "serve"), "run", config], env={**env, "RAY_ADDRESS": "auto"})
        code = serve.wait()
        log.error("serve run exited with code %d", code)
        return code or 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log.error("montage up failed: %s", exc)
        return 1
    finally:
        for stopping in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(stopping, signal.SIG_IGN)
        if serve:
            stop(serve, signal.SIGINT)  # serve run shuts Serve down on Ctrl-C
        if head:
            stop(head)
        if redis:
            redis.stop()
