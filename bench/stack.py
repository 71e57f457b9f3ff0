"""The suite's own Montage: an embedded Redis, a local Ray (one virtual GPU) and Serve on its own port.

Everything lives under `var/bench/` and is wiped at start, so every run begins from an empty Redis and asset store.
Nothing outside what this process starts is touched: Ray is started in-process (never `ray start`, never attached
to another cluster) and shut down with its Serve instance; the Redis child process is stopped.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from cluster.redis_server import EmbeddedRedis

ROOT = Path("var/bench")
PORT = 18500  # `make run` serves on 8000 and the test suite on 18000; either may be running meanwhile
SERVE_CONFIG = Path("serve_config.yaml")
APP = "montage"


def app_config(redis_url: str, asset_dir: Path) -> dict[str, Any]:
    """serve_config.yaml's application, pointed at this suite's Redis and asset directory."""
    application = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]
    application["args"]["redis_url"] = redis_url
    application["args"].setdefault("composition", {})["asset_dir"] = str(asset_dir.resolve())
    return application


def replica_threads(application: dict[str, Any], family: str) -> int:
    """Torch threads of a family's replica: Ray sets OMP_NUM_THREADS to floor(num_cpus), at least 1."""
    return max(1, math.floor(application["args"][family]["deployment"].get("num_cpus", 1)))


@dataclass
class Stack:
    """A running Montage app; `start()` brings it up, `stop()` takes down everything it started."""

    port: int = PORT
    redis: EmbeddedRedis | None = None
    application: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def redis_db(self, db: int) -> str:
        """A URL for database `db` of the suite's Redis (the app uses 0)."""
        assert self.redis is not None
        return self.redis.url.rsplit("/", 1)[0] + f"/{db}"

    def start(self, timeout_s: float = 600.0) -> Stack:
        import ray
        from ray import serve

        from composition.app import build_app

        for name in ("redis", "assets"):
            shutil.rmtree(ROOT / name, ignore_errors=True)
        self.redis = EmbeddedRedis(ROOT / "redis").start()
        self.application = app_config(self.redis.url, ROOT / "assets")
        os.environ.pop("RAY_ADDRESS", None)
        # address="local": always a new cluster, never one a `ray start` (e.g. `make run`) left on this machine
        ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        serve.run(build_app(self.application["args"]), name=APP, route_prefix=self.application["route_prefix"])
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get("/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(1)
        raise TimeoutError(f"montage on {self.url} not ready after {timeout_s:.0f} s")

    def stop(self) -> None:
        import ray
        from ray import serve

        try:
            if ray.is_initialized():
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
        finally:
            if self.redis:
                self.redis.stop()
