"""One deployment of the default serve_config.yaml app per test session, over real HTTP and real Redis."""
import time

import httpx
import pytest
import yaml
from helpers import BASE

CLAIM_IDLE_S = 3.0  # runner reclaim delay in tests, so a killed runner's task is picked up quickly


def deploy_config(ray_serve, redis_url: str, asset_dir, **overrides) -> dict:
    """Deploys serve_config.yaml's app declaratively (as `serve deploy` does) and waits until it runs."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    with open("serve_config.yaml") as handle:
        application = yaml.safe_load(handle)["applications"][0]
    application["args"]["redis_url"] = redis_url
    application["args"]["composition"] = {"asset_dir": str(asset_dir), "variant_cap": 3}
    application["args"]["runner"]["runner"] = {"concurrency": 32, "claim_idle_s": CLAIM_IDLE_S, "heartbeat_s": 0.5}
    application.update(overrides)
    serve_start().deploy_apps(ServeDeploySchema.model_validate({"applications": [application]}))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = ray_serve.status().applications.get("montage")
        if status and status.status == "RUNNING":
            return application
        time.sleep(1)
    raise TimeoutError(f"montage did not start: {ray_serve.status().applications.get('montage')}")


@pytest.fixture(scope="session")
def montage(ray_serve, redis_url, tmp_path_factory):
    """The running app: (status, asset dir)."""
    asset_dir = tmp_path_factory.mktemp("assets")
    deploy_config(ray_serve, redis_url, asset_dir)
    yield ray_serve.status().applications["montage"], asset_dir
    ray_serve.delete("montage")


@pytest.fixture(scope="session")
def client(montage):
    with httpx.Client(base_url=BASE, timeout=120) as session:
        yield session
