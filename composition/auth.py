"""Who is calling: API-key auth (when required; a web session's cookie on media and task events), the caller's tier,
lane, rate limit and daily quotas."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from composition.deps import ServicesDep
from composition.errors import ApiError
from composition.services import Services
from composition.store.access import key_digest
from config.composition import LANES, Lane, QuotaKind, TierArgs

SESSION_COOKIE = "montage_session"
# What a session cookie may read, since <img>, <video> and EventSource send no headers; every other route, and every
# method that changes state, needs the bearer key, so a cookie never makes a cross-site request act for its user.
SESSION_ROUTES = frozenset({"/v1/assets/{asset_id}", "/v1/tasks/{task_id}/events"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; with auth off, an anonymous caller whose bodies name the user."""

    user_id: str | None = None
    tier: TierArgs | None = None
    signing_key: str | None = None  # the sha256 of the caller's key when it has a webhook secret
    key_sha256: str | None = None  # the sha256 of the caller's key (auth on)
    tier_name: str = ""  # the key's tier (auth on)

    @property
    def lane(self) -> Lane:
        return self.tier.lane if self.tier else "normal"

    def lane_for(self, priority: Lane | None) -> Lane:
        """The lane a request asking for `priority` gets: as asked, but never above the tier's lane (auth off: any
        lane); the tier's when it asks for none."""
        if priority is None:
            return self.lane
        if self.tier is None:
            return priority
        return max(priority, self.tier.lane, key=LANES.index)  # LANES runs high → low

    @property
    def weight(self) -> float:
        return self.tier.weight if self.tier else 1.0

    @property
    def admin(self) -> bool:
        """Operators' keys; with auth off (local use) every caller."""
        return self.tier is None or self.tier.admin

    def user(self, claimed: str | None) -> str | None:
        """The user a request acts for: the key's user when authenticated, else what the body claims."""
        return self.user_id or claimed


def _bearer_key(request: Request) -> str | None:
    """The key of an `Authorization: Bearer <key>` header."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def _caller_digest(request: Request, services: Services) -> str | None:
    """The sha256 of the caller's key: the bearer header's, else, on a read of `SESSION_ROUTES` only, the key a live
    session cookie stands for."""
    if key := _bearer_key(request):
        return key_digest(key)
    token, route = request.cookies.get(SESSION_COOKIE), request.scope.get("route")
    if token and request.method in ("GET", "HEAD") and getattr(route, "path", None) in SESSION_ROUTES:
        return await services.access.session(token)
    return None


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """401 without a live key (or session), 429 with Retry-After over the tier's rate."""
    if not services.auth_required:
        return Principal()
    digest = await _caller_digest(request, services)
    record = await services.access.record(digest) if digest else None
    if record is None:
        raise ApiError(401, "unauthorized", "authorization: a valid `Bearer <key>` is required (media and task "
                       "events also take the cookie of POST /v1/session)", "authorization",
                       headers={"WWW-Authenticate": "Bearer"})
    tier = services.args.access.tiers.get(record.tier)
    if tier is None:
        raise ApiError(403, "forbidden", f"authorization: the key's tier {record.tier!r} is not configured",
                       "authorization")
    principal = Principal(record.user_id, tier, digest if record.webhook_secret else None, digest, record.tier)
    wait_s = await services.access.take_token(record.user_id, tier.rate_per_s, tier.burst)
    if wait_s:
        raise ApiError(429, "rate_limited", f"rate limit of {tier.rate_per_s:g}/s exceeded", None,
                       headers={"Retry-After": str(wait_s)})
    return principal


async def charge(services: Services, principal: Principal, kind: QuotaKind | None) -> None:
    """Takes one of today's tasks of this kind from the caller's quota; 429 naming the limit when none is left, or
    when the tier's daily device seconds are spent."""
    if principal.tier is None or kind is None:
        return
    if (seconds := principal.tier.daily_gpu_seconds) is not None and \
            await services.access.gpu_seconds_spent(principal.user_id) >= seconds:
        raise ApiError(429, "quota_exceeded", f"daily quota of {seconds:g} gpu_seconds reached", "gpu_seconds")
    if kind not in principal.tier.daily:
        return
    limit = principal.tier.daily[kind]
    if not await services.access.take_quota(principal.user_id, kind, limit):
        raise ApiError(429, "quota_exceeded", f"daily quota of {limit} {kind} reached", kind)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_admin(principal: PrincipalDep) -> Principal:
    """403 unless the caller's key is of an admin tier (auth off: everyone)."""
    if not principal.admin:
        raise ApiError(403, "forbidden", "authorization: this route needs an admin key", "authorization")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
