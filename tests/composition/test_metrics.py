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
    deadline = time.monotonic() + 90
    while True:
        text = scrape()
        missing = [name for name in SERIES if f"ray_{name}" not in text]
        if not missing:
            break
        assert time.monotonic() < deadline, f"missing after 90 s: {missing}"
        time.sleep(3)
    assert 'route="/v1/images/generations"' in text and 'result="hit"' in text
    assert "ray_serve_" in text  # Serve's own series on the same endpoint
