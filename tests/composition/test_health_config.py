"""Detailed health, the warm-up and runtime batching settings over HTTP; admin-only with auth on."""
import time

from secured import bearer

FAMILIES = {"llm", "sdxl", "flux", "svd", "wan", "embedder"}


def test_detailed_health_reports_each_models_device_memory_and_measured_times(client):
    image = client.post("/v1/images/generations", json={"prompt": "a lighthouse at dusk, health probe",
                                                        "model": "sdxl"})
    assert image.status_code == 200, image.text
    assert client.post("/v1/prompts/optimize", json={"prompt": "a lighthouse at dusk"}).status_code == 200
    health = client.get("/v1/health/detailed").json()
    assert health["status"] == "ok" and health["redis"]["ok"] and health["runner"]["ok"]
    assert int(health["redis"]["version"].split(".")[0]) >= 6 and health["redis"]["used_memory_bytes"] > 0
    assert set(health["models"]) == FAMILIES
    for family, model in health["models"].items():
        assert model["ok"] and model["device"] == "cpu" and model["memory"]["resident"] > 50 * 2**20, family
    for family in ("sdxl", "llm"):
        generation = health["models"][family]["generation"]
        assert generation["samples"] >= 1 and generation["ms_per_job"] > 0 and generation["ms_per_unit"] > 0
    assert health["tasks"]["by_status"]["succeeded"] >= 1 and set(health["tasks"]["lanes"]) == {"high", "normal", "low"}


def test_warmup_runs_one_request_through_every_family(client):
    response = client.post("/v1/health/warmup")
    assert response.status_code == 200, response.text
    warmup = response.json()
    assert warmup["ok"] is True and set(warmup["models"]) == FAMILIES
    for family, result in warmup["models"].items():
        assert result["ok"] and 0 < result["ms"] <= warmup["ms"] and result["replica"], family


def test_patching_batching_reconfigures_the_running_replicas_without_a_restart(client):
    before = client.get("/v1/config").json()
    svd = before["deployments"]["svd"]
    assert svd["deployment"] == "SVD" and svd["applied"]["max_batch_size"] == svd["max_batch_size"]
    assert svd["applied"]["step_batch"] == 2 and before["deployments"]["sdxl"]["applied"]["step_batch"] == 8
    assert "step_batch" not in before["deployments"]["llm"]["applied"]  # no steps, no step batch
    patch = {"deployments": {"svd": {"max_batch_size": 3, "batch_wait_timeout_s": 0.02}}}
    try:
        response = client.patch("/v1/config", json=patch)
        assert response.status_code == 200, response.text
        assert response.json()["deployments"]["svd"]["max_batch_size"] == 3
        deadline = time.monotonic() + 60
        while (applied := client.get("/v1/config").json()["deployments"]["svd"]["applied"])["max_batch_size"] != 3:
            assert time.monotonic() < deadline, applied
            time.sleep(0.5)
        assert applied["batch_wait_timeout_s"] == 0.02
        assert applied["replica"] == svd["applied"]["replica"]  # the same replica: reconfigured, not restarted
        assert client.get("/v1/config").json()["deployments"]["sdxl"] == before["deployments"]["sdxl"]
    finally:
        restore = {"max_batch_size": svd["max_batch_size"], "batch_wait_timeout_s": svd["batch_wait_timeout_s"]}
        assert client.patch("/v1/config", json={"deployments": {"svd": restore}}).status_code == 200
    too_big = {"deployments": {"svd": {"max_batch_size": svd["max_ongoing_requests"] + 1}}}
    for body, field in ((too_big, "deployments.svd.max_batch_size"),
                        ({"deployments": {"sora": {"max_batch_size": 2}}}, "deployments.sora"),
                        ({"deployments": {"svd": {"max_batch_size": 0}}}, "deployments.svd.max_batch_size")):
        response = client.patch("/v1/config", json=body)
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text


def test_concurrent_patches_of_different_deployments_all_hold(client):
    """Each change reads the config the change before it wrote (they take turns): none is lost, each answers with
    its own change in place."""
    import concurrent.futures

    before = client.get("/v1/config").json()["deployments"]
    sizes = {"sdxl": 3, "flux": 5, "svd": 2, "wan": 3}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(sizes)) as pool:
            answers = dict(zip(sizes, pool.map(lambda item: client.patch("/v1/config", json={
                "deployments": {item[0]: {"max_batch_size": item[1]}}}), sizes.items())))
        for family, answer in answers.items():
            assert answer.status_code == 200, answer.text
            assert answer.json()["deployments"][family]["max_batch_size"] == sizes[family]
        held = client.get("/v1/config").json()["deployments"]
        assert {family: held[family]["max_batch_size"] for family in sizes} == sizes
    finally:
        restore = {family: {"max_batch_size": before[family]["max_batch_size"]} for family in sizes}
        assert client.patch("/v1/config", json={"deployments": restore}).status_code == 200


def test_settings_and_warmup_need_an_admin_key_when_auth_is_on(secured):
    async def steps(client, services):
        user, _ = await services.access.create_key("pat", "pro")
        admin, _ = await services.access.create_key("ops", "ops")
        codes = {}
        for method, path in (("GET", "/v1/config"), ("PATCH", "/v1/config"), ("POST", "/v1/health/warmup"),
                             ("GET", "/v1/health/detailed")):
            for who, key in (("user", user), ("admin", admin)):
                codes[method, path, who] = (await client.request(method, path, headers=bearer(key))).status_code
        return codes

    codes = secured(steps)
    assert {k: v for k, v in codes.items() if k[2] == "user"} == {
        ("GET", "/v1/config", "user"): 403, ("PATCH", "/v1/config", "user"): 403,
        ("POST", "/v1/health/warmup", "user"): 403, ("GET", "/v1/health/detailed", "user"): 200}
    assert {k: v for k, v in codes.items() if k[2] == "admin"} == {
        ("GET", "/v1/config", "admin"): 200, ("PATCH", "/v1/config", "admin"): 422,  # no body
        ("POST", "/v1/health/warmup", "admin"): 200, ("GET", "/v1/health/detailed", "admin"): 200}
