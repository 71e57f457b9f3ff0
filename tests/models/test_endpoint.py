"""`llm.endpoint` against a real OpenAI-compatible server started here: `transformers serve` (offline, CPU) on the
tiny model's own folder. It ignores `response_format`, so the random model's answers break the schema: the template
answers (the same fallback as a local answer cut short), after a real round trip. A wrong model or an unreachable
server is an error naming `llm.endpoint`."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from config.families import LLMArgs
from models import llm
from models.endpoint import EndpointError
from models.types import PromptRequest, StoryboardRequest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, model name) of a running `transformers serve` on the tiny Qwen."""
    folder = tmp_path_factory.mktemp("served") / "qwen-tiny"
    model, tokenizer = llm.load(LLMArgs(), torch.device("cpu"), torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(folder), "--device", "cpu",
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=os.environ | {"HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:  # its readiness: the model listed
            assert process.poll() is None and time.monotonic() < deadline, "transformers serve did not start"
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url, str(folder)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def test_requests_go_to_the_server_and_an_answer_that_breaks_the_schema_falls_back(server):
    url, name = server
    model = llm.LLM(LLMArgs(endpoint={"url": url, "model": name}, max_new_tokens=16))
    model.warmup()
    ask = model.optimize_ask(PromptRequest(prompt="a cat on a roof"))
    assert isinstance(model.engine._post({"model": name, "messages": ask.conversation, "max_tokens": 4}), str)
    answers = [model.submit(ask) for _ in range(2)]  # in flight together: each counts the other
    assert [answer.result(60) for answer in answers] == [None, None] and [a.batch for a in answers] == [2, 2]
    (result,) = model.optimize([PromptRequest(prompt="a cat on a roof", target="video")])
    assert result.fallback and result.optimized == llm.template_prompt(PromptRequest(prompt="a cat on a roof",
                                                                                     target="video"))
    board = model.storyboard(StoryboardRequest(theme="a fox", num_scenes=2))
    assert board.fallback and len(board.scenes) == 2


def test_a_model_the_server_does_not_serve_is_a_startup_error_naming_it(server):
    url, _ = server
    model = llm.LLM(LLMArgs(endpoint={"url": url, "model": "qwen-nonexistent"}))
    with pytest.raises(EndpointError, match=r"llm\.endpoint .* \(model 'qwen-nonexistent'\): the server does not "
                                            r"serve this model"):
        model.warmup()


def test_an_unreachable_endpoint_fails_at_startup_and_each_request_after_its_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = llm.LLM(LLMArgs(endpoint={"url": url, "model": "m", "retries": 2}))
    with pytest.raises(EndpointError, match=f"llm.endpoint {url} .*cannot list its models"):
        model.warmup()
    with pytest.raises(EndpointError, match=f"llm.endpoint {url}"):
        model.optimize([PromptRequest(prompt="a cat")])
