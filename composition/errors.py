"""Errors and their one mapping to HTTP, the same in the ingress and the task runner: the contract's envelope
{"error": {"code", "message", "field"}} (OpenAI's under `/openai/`), never a stack trace. A request's own fault is an
`InvalidRequest`, a missing thing a `NotFound`; anything else a library raises (a `ValueError` included) is a server
failure, logged."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from composition.schemas.common import sent_instead
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
    if isinstance(exc, ValidationError):  # a model request built in a task: its validator's `InvalidRequest`, if any
        exc = invalid_request_in(exc) or exc
    if isinstance(exc, InvalidRequest):
        return ApiError(422, "invalid_request", f"{exc.field}: {exc.message}", exc.field)
    return None


def invalid_request_in(exc: ValidationError) -> InvalidRequest | None:
    """The `InvalidRequest` a validator raised inside a pydantic `ValidationError` (its first), naming the field where
    it was found ("controls.0.image", not the validator's own "controls.image"); None when none did."""
    for error in exc.errors():
        if isinstance(found := (error.get("ctx") or {}).get("error"), InvalidRequest):
            where = ".".join(str(part) for part in error.get("loc", ()))
            return InvalidRequest(where, found.message) if where else found
    return None


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


OPENAI_PREFIX = "/openai/"
OPENAI_PARAMS = {"width": "size", "height": "size", "user_id": "user", "num_frames": "seconds"}  # native field → the OpenAI param it comes from
OPENAI_CODES = {"invalid_request": "invalid_value", "unauthorized": "invalid_api_key",
                "rate_limited": "rate_limit_exceeded", "quota_exceeded": "insufficient_quota"}
OPENAI_TYPES = {"rate_limited": "requests", "quota_exceeded": "insufficient_quota"}


def openai_error(status: int, code: str, message: str, field: str | None = None) -> tuple[int, dict]:
    """OpenAI's status and envelope `{"error": {"message", "type", "param", "code"}}` for an error: a request's fault
    (422, 415) is a 400 `invalid_request_error` naming the OpenAI param; a server's, a `server_error`."""
    param = OPENAI_PARAMS.get(field or "", field)
    if field and param != field:
        message = message.replace(f"{field}:", f"{param} ({field}):", 1)
    status = 400 if status in (415, 422) else status
    kind = "server_error" if status >= 500 else OPENAI_TYPES.get(code, "invalid_request_error")
    param = None if status in (401, 403, 429) or status >= 500 else param
    return status, {"error": {"message": message, "type": kind, "param": param, "code": OPENAI_CODES.get(code, code)}}


def error_response(path: str, status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The error as answered on `path`: the contract's envelope, or OpenAI's under `/openai/`, where a client must not
    retry what cannot change (a spent quota, a cancelled task)."""
    if not path.startswith(OPENAI_PREFIX):
        return JSONResponse(error_body(code, message, field), status, headers=headers)
    status, body = openai_error(status, code, message, field)
    if code in ("quota_exceeded", "cancelled"):
        headers = (headers or {}) | {"x-should-retry": "false"}
    return JSONResponse(body, status, headers=headers)


def invalid_json(request: Request, where: str) -> JSONResponse:
    """A body that is not JSON (malformed, or not UTF-8): 400 naming `body` and where it broke."""
    return error_response(request.url.path, 400, "invalid_json", f"body: invalid JSON at {where}", "body")


def _field_of(message: str) -> str | None:
    """A model validator's message starts with the field it checks: "theme: give exactly one ..." → "theme"."""
    head = message.split(":", 1)[0]
    return head if head and head.replace(".", "").replace("_", "").isalnum() and " " not in head else None


FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def unaccepted_content_type(request: Request) -> str | None:
    """Why the request's body cannot be read, when its content type is not the one its route takes (JSON, or a
    form); None when it is, or when the route takes no body."""
    body = getattr(request.scope.get("route"), "body_field", None)
    sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body is None or not sent:
        return None
    if isinstance(body.field_info, params.Form):
        accepted = sent in FORMS
    else:
        accepted = sent == "application/json" or sent.endswith("+json")
    if accepted:
        return None
    return f"content-type: {sent} is not accepted here; send {body.field_info.media_type}"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: RequestValidationError | ValidationError) -> JSONResponse:
        if isinstance(exc, RequestValidationError) and (unaccepted := unaccepted_content_type(request)):
            return error_response(request.url.path, 415, "unsupported_media_type", unaccepted, "content-type")
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # loc is ("body", character offset): say where the JSON broke
            where = first.get("loc", ("body", "?"))[-1]
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return invalid_json(request, f"character {where}: {reason}")
        location = [str(part) for part in first.get("loc", ())
                    if part not in ("body", "query", "path", "header", "[key]")]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ") + sent_instead(first)
        whole_body = tuple(first.get("loc", ())) == ("body",)  # a model check, or not a JSON object at all
        field = ".".join(location) or _field_of(message) or ("body" if whole_body else None)
        text = message if message.startswith(f"{field}:") else f"{field or 'request'}: {message}"
        return error_response(request.url.path, 422, "invalid_request", text, field)

    @app.exception_handler(ApiError)
    @app.exception_handler(InvalidRequest)
    async def api_error(request: Request, exc: ApiError | InvalidRequest) -> JSONResponse:
        error = as_api_error(exc)
        return error_response(request.url.path, error.status, error.code, error.message, error.field, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(undecodable := exc.__cause__, UnicodeDecodeError):  # FastAPI's body parse: not UTF-8 JSON
            return invalid_json(request, f"byte {undecodable.start}: cannot be decoded as {undecodable.encoding}: "
                                         f"{undecodable.reason}")
        if isinstance(exc.__cause__, ValueError):  # FastAPI's body parse: an integer past Python's 4300 digits
            return invalid_json(request, f"an integer: {str(exc.__cause__).split(':')[0].lower()}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request.url.path, exc.status_code, code, str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(STORE_DOWN[0])
    @app.exception_handler(STORE_DOWN[1])
    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s: %s", request.url.path, type(exc).__name__)
        return error_response(request.url.path, 503, "unavailable", "the store is unavailable; retry shortly",
                              headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request.url.path, 500, "internal", "internal error")
