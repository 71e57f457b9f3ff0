"""The naive baseline: one FastAPI process that loads the tiny SDXL pipeline and calls it once per request.

This is the design most generation services start from: no batching, no task queue, no cache. The pipeline is not
thread-safe, so calls are serialised with a lock (FastAPI runs sync handlers in a thread pool).
`python -m bench.naive_server --port 18501 [--threads N]`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
from fastapi import FastAPI, Response
from pydantic import BaseModel


class Generate(BaseModel):
    prompt: str
    seed: int
    width: int = 64
    height: int = 64
    steps: int = 2
    guidance: float = 5.0


def create_app(threads: int) -> FastAPI:
    import torch

    from config.families import SDXLArgs
    from models.sdxl import SDXL
    from models.types import ImageRequest

    torch.set_num_threads(threads)
    model = SDXL(SDXLArgs())
    lock = threading.Lock()
    app = FastAPI(title="naive SDXL")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/generate")
    def generate(body: Generate) -> Response:
        with lock:
            (result,) = model.generate([ImageRequest(**body.model_dump())])
        return Response(result.png, media_type="image/png")

    return app


@contextlib.contextmanager
def running(port: int, threads: int, timeout_s: float = 120.0) -> Iterator[str]:
    """The naive server in a child process; yields its base URL and stops it on exit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bench.naive_server", "--port", str(port), "--threads",
                                str(threads)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"naive server did not start on port {port}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18501)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the suite matches Montage's replica)")
    args = parser.parse_args()
    uvicorn.run(create_app(args.threads), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
