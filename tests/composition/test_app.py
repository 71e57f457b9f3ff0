"""The default serve_config.yaml app over real HTTP: every deployment healthy, ingress ready."""
import time

import httpx
import pytest
import yaml

pytestmark = pytest.mark.timeout(600)
BASE = "http://127.0.0.1:18000"


@pytest.fixture(scope="module")
def app(ray_serve, redis_url):
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    with open("serve_config.yaml") as handle:
        config = yaml.safe_load(handle)
    application = config["applications"][0]
    application["args"]["redis_url"] = redis_url
    serve_start().deploy_apps(ServeDeploySchema.model_validate({"applications": [application]}))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = ray_serve.status().applications.get("montage")
        if status and status.status == "RUNNING":
            break
        time.sleep(2)
    yield ray_serve.status().applications["montage"]
    ray_serve.delete("montage")


def test_every_deployment_is_healthy(app):
    assert app.status == "RUNNING"
    assert {name: d.status for name, d in app.deployments.items()} == {
        name: "HEALTHY" for name in ("PromptLLM", "SDXL", "Flux", "SVD", "Wan", "Embedder", "Ingress")}


def test_ready_reports_every_family_and_redis(app):
    response = httpx.get(f"{BASE}/ready", timeout=30)
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"redis", "llm", "sdxl", "flux", "svd", "wan", "embedder"}
    assert all(check["ok"] for check in checks.values())


def test_info_names_models_and_sources(app):
    models = httpx.get(f"{BASE}/v1/info", timeout=30).json()["models"]
    assert models["sdxl"]["source"] == "tiny" and models["embedder"]["source"] == "pretrained"
    assert models["wan"]["model"] == "wan"


def test_unknown_route_uses_the_error_envelope(app):
    response = httpx.get(f"{BASE}/v1/nothing-here", timeout=30)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "field"}
