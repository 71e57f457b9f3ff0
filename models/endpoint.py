"""The LLM family's work on an OpenAI-compatible chat-completions server (vLLM, SGLang, Ray Serve LLM, a hosted API):
the same chats, the answer's JSON schema as `response_format`, the same fallbacks (an answer that breaks the schema,
or none within the time limit, is None: the template answers). A server that cannot be reached or does not serve
the model is an error naming `llm.endpoint` at startup; a call that fails after its retries fails its request."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema

from config.families import LLMEndpoint
from models.chat import Answer, Ask


class EndpointError(RuntimeError):
    """`llm.endpoint` could not answer (unreachable, wrong model, failed after retries)."""


class ChatEndpoint:
    def __init__(self, endpoint: LLMEndpoint, slots: int, timeout_s: float) -> None:
        self.endpoint, self.timeout_s = endpoint, min(timeout_s, endpoint.request_timeout_s)
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self.client = httpx.Client(base_url=endpoint.url, headers=headers, timeout=self.timeout_s)
        self.pool = ThreadPoolExecutor(slots, thread_name_prefix="llm-endpoint")
        self.slots, self._limit = slots, slots
        self.inflight: set[Answer] = set()
        self.gate = threading.Condition()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, size: int) -> None:
        with self.gate:
            self._limit = min(size, self.slots)
            self.gate.notify_all()

    def _name(self) -> str:
        return f"llm.endpoint {self.endpoint.url} (model {self.endpoint.model!r})"

    def warmup(self) -> None:
        """Checks the server answers and serves the model."""
        try:
            reply = self.client.get("/models")
            reply.raise_for_status()
            served = [entry.get("id") for entry in reply.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise EndpointError(f"{self._name()}: cannot list its models: {error}") from error
        if self.endpoint.model not in served:
            raise EndpointError(f"{self._name()}: the server does not serve this model (it serves {served})")

    def submit(self, ask: Ask, lane_rank: int = 1, user: str = "",
               on_text: Callable[[str], None] | None = None) -> Answer:
        answer = Answer()

        def run() -> None:
            if not answer.set_running_or_notify_cancel():  # cancelled while it waited for a thread
                return
            try:
                answer.set_result(self._answer(answer, ask, on_text))
            except Exception as error:
                answer.set_exception(error)

        self.pool.submit(run)
        return answer

    def cancel(self, answer: Answer) -> None:
        answer.cancel()

    def _answer(self, answer: Answer, ask: Ask, on_text: Callable[[str], None] | None) -> str | None:
        """Asks once fewer than `limit` requests are in flight; `answer.batch` counts the most in flight with it."""
        with self.gate:
            self.gate.wait_for(lambda: len(self.inflight) < self._limit)
            self.inflight.add(answer)
            for other in self.inflight:
                other.batch = max(other.batch, len(self.inflight))
        try:
            return self._ask(ask, on_text)
        finally:
            with self.gate:
                self.inflight.discard(answer)
                self.gate.notify_all()

    def _ask(self, ask: Ask, on_text: Callable[[str], None] | None) -> str | None:
        messages = list(ask.conversation)
        body = {"model": self.endpoint.model, "messages": messages, "max_tokens": ask.max_new_tokens,
                "temperature": ask.temperature, "seed": ask.seed,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "answer", "schema": ask.schema, "strict": True}}}
        content = self._post(body)
        if content is None:
            return None
        try:
            value = json.loads(content)
            jsonschema.validate(value, ask.schema)
        except (ValueError, jsonschema.ValidationError):
            return None  # the same fallback as a local answer cut short
        text = ask.from_json(value)
        if on_text:
            on_text(text)
        return text

    def _post(self, body: dict[str, Any]) -> str | None:
        """The answer's content; None past the time limit; `EndpointError` once every try failed."""
        deadline = time.monotonic() + self.timeout_s
        error: Exception | None = None
        for _ in range(self.endpoint.retries + 1):
            try:
                reply = self.client.post("/chat/completions", json=body, timeout=max(0.1, deadline - time.monotonic()))
                if reply.status_code < 500:
                    reply.raise_for_status()
                    return reply.json()["choices"][0]["message"]["content"]
                error = httpx.HTTPStatusError(f"{reply.status_code} {reply.text[:200]}", request=reply.request,
                                              response=reply)
            except httpx.TimeoutException:
                return None
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as failure:
                error = failure
                if isinstance(failure, httpx.HTTPStatusError) and failure.response.status_code < 500:
                    break  # the server refuses this request (wrong model, bad schema): no retry helps
            if time.monotonic() >= deadline:
                return None
        raise EndpointError(f"{self._name()}: {error}")
