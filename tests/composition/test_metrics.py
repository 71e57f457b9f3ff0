"""The montage_* series reach Ray's Prometheus endpoint (next to Ray Serve's own) after traffic."""
import time

import httpx
from helpers import METRICS_PORT

SERIES = ("montage_requests", "montage_request_ms", "montage_cache", "montage_dedup", "montage_batch_size",
          "montage_queue_wait_ms", "montage_model_run_ms", "montage_tasks_finished", "montage_task_duration_ms",
          "montage_tasks")


def scrape() -> str:
    return httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=30).text


def test_montage_series_appear_after_traffic(client):
    body = {"prompt": "a metrics lighthouse", "seed": 99}
    assert client.post("/v1/images/generations", json=body).status_code == 200
    assert client.post("/v1/images/generations", json=body).json()["cache_hit"] is True
    expected = [f"ray_{name}" for name in SERIES]
    expected += ['route="/v1/images/generations"', 'result="hit"', "ray_serve_"]  # ray_serve_: Serve's own series
    deadline = time.monotonic() + 120
    while True:
        # Other tests' traffic may create a series first; wait for this test's own labels too.
        missing = [needle for needle in expected if needle not in scrape()]
        if not missing:
            break
        assert time.monotonic() < deadline, f"missing after 120 s: {missing}"
        time.sleep(3)
