"""Montage needs Redis 8 or newer: the prompt index is a vector set (VADD, VSIM)."""
from __future__ import annotations

import logging

import redis

MIN_MAJOR = 8
log = logging.getLogger(__name__)


def require_redis_8(url: str) -> None:
    """Raises, naming the version found, when the Redis at `url` is older than 8; an unreachable Redis is left to
    the stores' retries (it may be restarting)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    where = "{host}:{port}".format(**{"host": "?", "port": "?", **client.connection_pool.connection_kwargs})
    try:
        version = client.info("server")["redis_version"]
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("Redis at %s unreachable (%s): its version is checked when it answers", where, exc)
        return
    finally:
        client.close()
    if int(version.split(".")[0]) < MIN_MAJOR:
        raise RuntimeError(f"REDIS_URL: the Redis at {where} is {version}; Montage needs Redis {MIN_MAJOR} or newer "
                           "(its prompt index is a vector set: VADD, VSIM)")
