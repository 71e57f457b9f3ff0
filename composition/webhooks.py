"""Webhooks (Standard Webhooks): a request's `webhook_url` checked and subscribed to its task, and the sender that
runs beside each task runner: it leases due deliveries from Redis, signs and POSTs them, and retries failures with
exponential backoff until the retry window closes (every delivery is tried at least once)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from config.composition import WebhookArgs
from config.settings import Settings
from models.errors import InvalidRequest
from records.webhooks import Subscription

if TYPE_CHECKING:
    from composition.auth import Principal
    from composition.services import Services
    from composition.store.webhooks import Delivery

log = logging.getLogger("montage.webhooks")
FIELD = "webhook_url"
RESOLVE_TIMEOUT_S = 5.0
LEASE_MARGIN_S = 5.0  # beyond an attempt's timeout, before a leased delivery is due again


def _host_allowed(host: str, patterns: list[str]) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


async def check_destination(url: str, args: WebhookArgs) -> None:
    """`InvalidRequest` naming webhook_url unless `url` is http(s), its host is on the allow-list (when there is
    one) and every address it resolves to is public or in an allowed network."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(FIELD, "an http or https URL is required")
    if args.allow_hosts and not _host_allowed(host, [p.lower() for p in args.allow_hosts]):
        raise InvalidRequest(FIELD, f"host {host} is not on the webhook allow-list")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       RESOLVE_TIMEOUT_S)
    except (OSError, TimeoutError):
        raise InvalidRequest(FIELD, f"host {host} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if (not address.is_global or address.is_multicast) and not any(
                address in network for network in args.allow_networks):
            raise InvalidRequest(FIELD, f"host {host} is a private or loopback address ({address}), not allowed here")


async def subscription_for(services: Services, principal: Principal, body: Any) -> Subscription | None:
    """The webhook a request asks for, checked; None without one. With auth, deliveries are signed with the
    caller's key's secret (a key made before webhooks has none: 422)."""
    url = getattr(body, "webhook_url", None)
    if url is None:
        return None
    await check_destination(str(url), services.args.webhooks)
    if services.auth_required and not principal.signing_key:
        raise InvalidRequest(FIELD, "this API key has no webhook signing secret; create a new key for webhooks")
    return Subscription(url=str(url), events=body.webhook_events, user_id=body.user_id or "",
                        key=principal.signing_key or "")


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: `v1,` and base64 of HMAC-SHA256 over `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(delivery: Delivery) -> str:
    """The body sent: `{type, timestamp, data}`, the same on every attempt."""
    when = datetime.fromtimestamp(delivery.created_at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": delivery.event, "timestamp": when, "data": json.loads(delivery.data)},
                      separators=(",", ":"))


class WebhookSender:
    """Sends due deliveries, up to `concurrency` at once; what it leased and did not finish is due again after the
    lease, on whichever runner replica looks first (at least once, across restarts)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.args = services.args.webhooks
        self.active: set[asyncio.Task] = set()
        headers = {"user-agent": "Montage-Webhooks/1", "content-type": "application/json"}
        self.client = httpx.AsyncClient(timeout=self.args.timeout_s, follow_redirects=False, trust_env=False,
                                        headers=headers)

    async def run(self) -> None:
        while True:
            try:
                await self._poll()
            except Exception:  # Redis down or similar: keep the loop alive, retry shortly
                log.exception("webhook poll failed")
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        free = self.args.concurrency - len(self.active)
        leased = await self.services.webhooks.lease(free, self.args.timeout_s + LEASE_MARGIN_S) if free > 0 else []
        for delivery in leased:
            task = asyncio.create_task(self.attempt(delivery))
            self.active.add(task)
            task.add_done_callback(self.active.discard)
        if not leased:
            await asyncio.sleep(self.args.poll_s)

    async def attempt(self, delivery: Delivery) -> None:
        """One attempt, recorded: delivered on a 2xx; else retried after the backoff while that is within the
        window; failed at once when the destination is no longer allowed or its signing key is gone."""
        try:
            await check_destination(delivery.url, self.args)
            secret = await self._secret(delivery.key)
        except InvalidRequest as exc:
            await self.services.webhooks.record(delivery, "failed", None, exc.message)
            return
        if secret is None:
            await self.services.webhooks.record(delivery, "failed", None, "the signing key is gone")
            return
        body, now = payload(delivery), int(time.time())
        headers = {"webhook-id": delivery.id, "webhook-timestamp": str(now),
                   "webhook-signature": sign(secret, delivery.id, now, body)}
        status, error = None, None
        try:
            status = (await self.client.post(delivery.url, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        if status is not None and 200 <= status < 300:
            await self.services.webhooks.record(delivery, "delivered", status, None)
            return
        delay = min(self.args.backoff_s * 2 ** delivery.attempts, self.args.max_backoff_s) * random.uniform(1, 1.1)
        next_at = time.time() + delay
        outcome = "retry" if next_at <= delivery.created_at + self.args.retry_window_s else "failed"
        await self.services.webhooks.record(delivery, outcome, status, error or f"HTTP {status}", next_at)

    async def _secret(self, key: str) -> str | None:
        """The API key's secret, or the server's when the subscription has no key (auth off)."""
        if key:
            return await self.services.access.webhook_secret(key)
        return await self.services.webhooks.server_secret(self.args.secret or Settings().webhook_secret)
