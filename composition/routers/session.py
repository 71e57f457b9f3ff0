"""POST /v1/session, DELETE /v1/session: a short-lived cookie standing for the caller's key, so the web page's
`<img>`, `<video>` and `EventSource`, which send no headers, can read its media and task events."""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from composition.auth import SESSION_COOKIE, PrincipalDep
from composition.deps import ServicesDep
from composition.schemas.session import SessionOut

router = APIRouter(prefix="/v1/session", tags=["session"])


def _cookie(request: Request) -> dict[str, Any]:
    """The cookie's attributes: no script reads it, no other site's request carries it, https only over https."""
    https = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    return {"path": "/v1", "httponly": True, "samesite": "strict", "secure": https}


@router.post("")
async def open_session(request: Request, response: Response, services: ServicesDep,
                       principal: PrincipalDep) -> SessionOut:
    """Sets the `montage_session` cookie for `access.session_ttl_s` (15 min by default); needs the bearer key. The
    cookie authenticates only GET/HEAD of `/v1/assets/{id}` and `/v1/tasks/{id}/events`; revoking the key ends it."""
    if principal.key_sha256 is None:  # auth off
        return SessionOut(user_id=None, expires_at=None)
    ttl_s = services.args.access.session_ttl_s
    token = await services.access.open_session(principal.key_sha256, ttl_s)
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl_s, **_cookie(request))
    return SessionOut(user_id=principal.user_id, expires_at=time.time() + ttl_s)


@router.delete("", status_code=204)
async def close_session(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """Ends the cookie's session (when it stands for the bearer key) and clears the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if principal.key_sha256 and token:
        await services.access.close_session(token, principal.key_sha256)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, **_cookie(request))
    return response
