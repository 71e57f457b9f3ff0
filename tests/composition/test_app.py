"""The default serve_config.yaml app over real HTTP: every deployment healthy, ingress ready, OpenAPI."""
from config.specs import SPECS

EXPECTED = {spec.deployment_name for spec in SPECS.values()} | {"TaskRunner", "Ingress"}


def test_every_deployment_is_healthy(montage):
    status, _ = montage
    assert status.status == "RUNNING"
    assert {name: d.status for name, d in status.deployments.items()} == {name: "HEALTHY" for name in EXPECTED}


def test_ready_reports_every_family_runner_and_redis(client):
    response = client.get("/ready")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"redis", "runner", *SPECS}
    assert all(check["ok"] for check in checks.values())


def test_info_names_models_and_sources(client):
    import tomllib

    info = client.get("/v1/info").json()
    with open("pyproject.toml", "rb") as handle:
        assert info["version"] == tomllib.load(handle)["project"]["version"]  # one version: the package's
    models = info["models"]
    assert models["sdxl"]["source"] == "tiny" and models["embedder"]["source"] == "pretrained"
    assert models["wan"]["model"] == "wan" and models["wan"]["frame_multiple"] == 4
    # how fast each engine runs, as far as its family has the setting: serve_config.yaml's defaults
    assert models["flux"]["engine"] == {"dtype": "auto", "compile": False, "quantize": "none",
                                        "step_cache": {"kind": "first_block", "threshold": 0.08}}
    assert models["sdxl"]["engine"] == {"dtype": "auto", "compile": False, "cuda_graphs": False}
    assert models["llm"]["engine"].keys() == {"dtype", "compile", "slots"}


def test_unknown_route_uses_the_error_envelope(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "field"}


def test_openapi_lists_every_contract_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    contract = {
        "/healthz": {"get"}, "/ready": {"get"}, "/v1/info": {"get"},
        "/v1/prompts/optimize": {"post"}, "/v1/images/generations": {"post"}, "/v1/images/controlled": {"post"},
        "/v1/images/edits": {"post"}, "/v1/writing": {"post"}, "/v1/videos/generations": {"post"},
        "/v1/videos/estimate": {"get"}, "/v1/souls/{soul_id}/image": {"get"},
        "/v1/variants/{variant_id}/seen": {"post"}, "/v1/prompts/{prompt_key}/variants": {"get"},
        "/v1/users/{user_id}/seen": {"get"}, "/v1/selfies": {"post"}, "/v1/storyboards": {"post"},
        "/v1/styles/{soul_id}": {"put", "get", "delete"}, "/v1/styles": {"get"},
        "/v1/projects": {"post", "get"}, "/v1/projects/{project_id}": {"get"},
        "/v1/projects/{project_id}/export": {"get"}, "/v1/projects/import": {"post"},
        "/v1/assets": {"post"}, "/v1/assets/{asset_id}": {"get"},
        "/v1/tasks/{task_id}": {"get", "delete"}, "/v1/tasks/{task_id}/events": {"get"}, "/v1/tasks": {"get"},
        "/v1/tasks/stats": {"get"}, "/v1/souls/{soul_id}/video": {"get", "post"},
        "/v1/variants/{variant_id}/video": {"post"},
        "/v1/health/detailed": {"get"}, "/v1/health/warmup": {"post"}, "/v1/config": {"get", "patch"},
        "/v1/projects/{project_id}/stats": {"get"},
    }
    missing = {path: methods - set(paths.get(path, {})) for path, methods in contract.items()}
    assert {path: methods for path, methods in missing.items() if methods} == {}
    assert client.get("/docs").status_code == 200


def test_status_lists_deployments_replicas_autoscaling_and_gpu_shares(montage):
    from cluster.status_cli import collect, render

    rows = {row["deployment"]: row for row in collect() if row["app"] == "montage"}
    assert set(rows) == EXPECTED
    assert rows["SDXL"]["num_gpus"] == 0.2 and rows["Embedder"]["num_gpus"] == 0
    assert all(row["replicas"] >= 1 and row["status"] == "HEALTHY" for row in rows.values())
    families = [spec.deployment_name for spec in SPECS.values()]
    assert {name: (rows[name]["min_replicas"], rows[name]["max_replicas"]) for name in families} == {
        name: (1, 2) for name in families}  # every family autoscales on the CPU demo
    header, *lines, total = render(list(rows.values())).splitlines()
    assert header.split()[4] == "autoscaling" and total.startswith("GPU in use")
    assert {line.split()[1]: line.split()[4] for line in lines if line.split()[1] in families} == {
        name: "1-2" for name in families}
