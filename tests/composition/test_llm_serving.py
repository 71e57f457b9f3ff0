"""The LLM replica's decode engine over HTTP: concurrent requests decode together and answer as alone; `stream: true`
answers Server-Sent Events of the text as it is decoded, then the final JSON."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest


def sse(response) -> list[tuple[str, dict]]:
    """(event name, data) of each Server-Sent Event."""
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def optimize(client, prompt: str, **options) -> dict:
    response = client.post("/v1/prompts/optimize", json={"prompt": prompt, "temperature": 1.0, **options})
    assert response.status_code == 200, response.text
    return response.json()


def test_concurrent_optimisations_decode_together_with_the_texts_they_get_alone(client):
    """On a loaded machine one round of 8 concurrent requests may reach the engine one at a time: up to 3 rounds, of
    new prompts, until some decoded beside others."""
    for round_ in range(3):
        prompts = [f"a lantern in the fog, round {round_} take {i}" for i in range(8)]
        with ThreadPoolExecutor(len(prompts)) as pool:
            batched = list(pool.map(lambda p: optimize(client, p, seed=12), prompts))
        if max(r["metadata"]["batch_size"] for r in batched) > 1:
            break
    else:
        pytest.fail("no two of 3 rounds of 8 concurrent optimisations decoded together")
    alone = [optimize(client, p, seed=11) for p in prompts]
    again = [optimize(client, p, seed=12) for p in prompts[:2]]  # seed 12 alone: same as batched
    assert [r["optimized"] for r in again] == [r["optimized"] for r in batched[:2]]
    assert [r["optimized"] for r in alone] != [r["optimized"] for r in batched]  # the seed matters
    assert not any(r["fallback"] for r in alone + batched)


def test_streamed_optimisation_sends_the_text_as_it_is_decoded_then_the_result(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "a red kite over hills.", "stream": True,
                                                         "seed": 3, "temperature": 0.7})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    (name, final), deltas = events[-1], [data["delta"] for name, data in events[:-1] if name == "delta"]
    assert name == "result" and final["status"] == 200 and final["task_id"] == response.headers["x-task-id"]
    assert deltas and final["result"]["optimized"] == "a red kite over hills" + "".join(deltas)
    assert not final["result"]["fallback"]


def test_streamed_storyboard_sends_the_scenes_json_then_the_finished_storyboard(client):
    response = client.post("/v1/storyboards", json={"theme": "a paper boat", "num_scenes": 1, "stream": True,
                                                    "scene_seconds": 1})
    assert response.status_code == 200, response.text
    events = sse(response)
    name, final = events[-1]
    assert name == "result" and final["status"] == 200, final
    streamed = json.loads("".join(data["delta"] for name, data in events if name == "delta"))
    assert [s["description"] for s in streamed["scenes"]] == [s["description"] for s in final["result"]["scenes"]]


def test_a_bad_stream_option_is_a_422_naming_it(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "x", "stream": "sometimes"})
    assert response.status_code == 422 and "stream" in response.text

