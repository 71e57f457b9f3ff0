"""The contract's error envelope: {"error": {"code", "message", "field"}}, never a stack trace."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

log = logging.getLogger("montage.ingress")
STORE_DOWN = (RedisConnectionError, RedisTimeoutError)  # Redis restarting or unreachable: retry later, not a bug
STORE_RETRY_AFTER_S = 2


class ApiError(Exception):
    """A client-facing failure with its HTTP status; raised by routers, workflows and stores alike."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers

    def body(self) -> dict:
        return error_body(self.code, self.message, self.field)


def not_found(what: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found", field)


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def _field_of(message: str) -> str | None:
    """`ValueError`s from models/ start with the field name: "width: must be ..." → "width"."""
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
        field = ".".join(location) or _field_of(message)
        text = message if message.startswith(f"{field}:") else f"{field or 'request'}: {message}"
        return JSONResponse(error_body("invalid_request", text, field), 422)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

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

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        message = str(exc).splitlines()[0] if str(exc) else "invalid value"
        return JSONResponse(error_body("invalid_request", message, _field_of(message)), 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body("internal", "internal error"), 500)
