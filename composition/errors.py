"""Errors and their one mapping to HTTP, the same in the ingress and the task runner: the contract's envelope
{"error": {"code", "message", "field"}}, never a stack trace. A request's own fault is an `InvalidRequest`, a missing
thing a `NotFound`; anything else a library raises (a `ValueError` included) is a server failure, logged."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from models.errors import InvalidRequest

log = logging.getLogger("montage.ingress")
STORE_DOWN = (RedisConnectionError, RedisTimeoutError)  # Redis restarting or unreachable: retry later, not a bug
STORE_RETRY_AFTER_S = 2


class ApiError(Exception):
    """A client-facing failure with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers

    def body(self) -> dict:
        return error_body(self.code, self.message, self.field)


class NotFound(ApiError):
    def __init__(self, what: str, field: str | None = None) -> None:
        super().__init__(404, "not_found", f"{what} not found", field)


class Conflict(ApiError):
    """The request is valid but the state of what it names forbids it."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(409, "conflict", f"{field}: {message}" if field else message, field)


def cause_of(exc: BaseException) -> BaseException:
    """The user-level exception inside a Ray error from a replica (whose own text carries a remote traceback)."""
    return getattr(exc, "cause", None) or exc


def as_api_error(exc: BaseException) -> ApiError | None:
    """The client-facing form of an error (also inside a Ray error from a replica), or None for a server failure."""
    exc = cause_of(exc)
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidRequest):
        return ApiError(422, "invalid_request", f"{exc.field}: {exc.message}", exc.field)
    return None


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def _field_of(message: str) -> str | None:
    """A model validator's message starts with the field it checks: "theme: give exactly one ..." → "theme"."""
    head = message.split(":", 1)[0]
    return head if head and head.replace(".", "").replace("_", "").isalnum() and " " not in head else None


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: RequestValidationError | ValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # loc is ("body", character offset): say where the JSON broke
            where = first.get("loc", ("body", "?"))[-1]
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return JSONResponse(error_body("invalid_request", f"body: invalid JSON at character {where}: {reason}",
                                           "body"), 422)
        location = [str(part) for part in first.get("loc", ())
                    if part not in ("body", "query", "path", "header", "[key]")]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        whole_body = tuple(first.get("loc", ())) == ("body",)  # a model check, or not a JSON object at all
        field = ".".join(location) or _field_of(message) or ("body" if whole_body else None)
        text = message if message.startswith(f"{field}:") else f"{field or 'request'}: {message}"
        return JSONResponse(error_body("invalid_request", text, field), 422)

    @app.exception_handler(ApiError)
    @app.exception_handler(InvalidRequest)
    async def api_error(request: Request, exc: ApiError | InvalidRequest) -> JSONResponse:
        error = as_api_error(exc)
        return JSONResponse(error.body(), error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(STORE_DOWN[0])
    @app.exception_handler(STORE_DOWN[1])
    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse(error_body("unavailable", "the store is unavailable; retry shortly"), 503,
                            headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body("internal", "internal error"), 500)
