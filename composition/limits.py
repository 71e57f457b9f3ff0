"""JSON body limits, checked before parsing: size (413) and nesting depth (422), so no body can exhaust the
parser's recursion or memory."""
from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from composition.errors import error_response

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, brackets inside strings ignored (no parse needed)."""
    depth = deepest = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


class JsonLimits:
    """ASGI middleware for `application/json` requests: reads the body once, refuses it over `max_bytes` or deeper
    than `max_depth`, else replays it to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app, self.max_bytes, self.max_depth = app, max_bytes, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _refuse(scope, receive, send, 413, "too_large", f"body: larger than {self.max_bytes} bytes")
                return
        body = b"".join(chunks)
        if json_depth(body) > self.max_depth:
            await _refuse(scope, receive, send, 422, "invalid_request",
                          f"body: JSON nested deeper than {self.max_depth} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    return content_type.split(b";")[0].strip().lower().endswith(b"json")


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    await error_response(scope["path"], status, code, message, "body")(scope, receive, send)
