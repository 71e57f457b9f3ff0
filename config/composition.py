"""Args of the composition layer: task runners, dedup, variants, uploads and the asset store."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator, model_validator

from config.specs import families_with

OBJECT_STORE_URL = r"^(s3|gs|az)://[a-z0-9][a-z0-9._-]*(/[^?#]*)?$"
Lane = Literal["high", "normal", "low"]
LANES: tuple[Lane, ...] = ("high", "normal", "low")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunnerArgs(_Strict):
    """Task runners: consumers of the task streams."""

    concurrency: int = Field(default=16, ge=1, le=512, description="tasks one runner replica executes at once")
    claim_idle_s: float = Field(default=30.0, gt=0, description="a task silent this long is taken from its runner")
    heartbeat_s: float = Field(default=5.0, gt=0, description="how often a runner re-claims the tasks it works on")
    max_attempts: int = Field(default=3, ge=1, le=20)
    block_ms: int = Field(default=500, ge=1, description="XREADGROUP block time per poll")


class DedupArgs(_Strict):
    """Near-duplicate prompt reuse."""

    enabled: bool = True
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="cosine; None: the tuned default")
    candidates: int = Field(default=8, ge=1, le=100, description="nearest indexed prompts checked per lookup")
    index_ttl_days: float = Field(default=30.0, gt=0.0, description="a prompt unused this long leaves the index")


class ReuseBand(_Strict):
    """Neighbours at least this similar start from this fraction of the schedule (steps skipped)."""

    similarity: float = Field(ge=0.0, le=1.0)
    fraction: float = Field(gt=0.0, lt=1.0)


class ReuseArgs(_Strict):
    """Approximate reuse (NIRVANA-like): a new prompt whose nearest neighbour in its scope is similar but not a
    duplicate starts from the neighbour's kept latent at a step its similarity allows (higher: later)."""

    enabled: bool = True
    min_similarity: float = Field(default=0.65, ge=0.0, le=1.0,
                                  description="below it (cosine) no neighbour is reused; at or above the dedup "
                                              "threshold the prompt merges instead")
    mapping: list[ReuseBand] = Field(
        default_factory=lambda: [ReuseBand(similarity=0.65, fraction=0.2), ReuseBand(similarity=0.72, fraction=0.4)],
        min_length=1, max_length=16,
        description="similarity floors (ascending) → fraction of the schedule started from; the kept step at or "
                    "below it is used (NIRVANA skips 10-50 % of 50 steps as similarity grows)")
    max_mb: float = Field(default=256.0, gt=0.0, description="latent library size cap per family (LRU beyond)")
    ttl_s: int = Field(default=86_400, ge=60, description="a library entry unused this long leaves it")

    @model_validator(mode="after")
    def _ascending(self) -> ReuseArgs:
        floors = [band.similarity for band in self.mapping]
        if floors != sorted(set(floors)) or floors[0] < self.min_similarity:
            raise ValueError("mapping: similarity floors ascending, distinct, none below min_similarity")
        return self

    def fraction(self, similarity: float) -> float | None:
        """The schedule fraction a neighbour this similar starts from; None: too far."""
        if similarity < self.min_similarity:
            return None
        return next((band.fraction for band in reversed(self.mapping) if similarity >= band.similarity), None)


WEBHOOK_SECRET = r"^whsec_[A-Za-z0-9+/]{32,}={0,2}$"


class WebhookArgs(_Strict):
    """Webhook deliveries (Standard Webhooks): where they may go, how long they are retried, how they are signed."""

    allow_hosts: list[str] = Field(default_factory=list,
                                   description="host names deliveries may go to (`*.example.com` for a domain's "
                                               "hosts); empty: any host with a public address")
    allow_networks: list[IPvAnyNetwork] = Field(default_factory=list,
                                                description="private or loopback networks allowed anyway, e.g. "
                                                            "127.0.0.0/8 (refused otherwise)")
    retry_window_s: float = Field(default=86_400, gt=0, description="a failing delivery is retried this long after "
                                                                    "its event (it is always tried once), then fails")
    backoff_s: float = Field(default=5.0, gt=0, description="delay before the first retry, doubled after each")
    max_backoff_s: float = Field(default=3600.0, gt=0, description="the longest delay between two attempts")
    timeout_s: float = Field(default=10.0, gt=0, le=60, description="each attempt's HTTP timeout")
    concurrency: int = Field(default=16, ge=1, le=256, description="deliveries one runner replica sends at once")
    poll_s: float = Field(default=0.5, gt=0, description="how often a runner looks for due deliveries")
    secret: str | None = Field(default=None, pattern=WEBHOOK_SECRET, repr=False,
                              description="signing secret with auth off (whsec_ + base64); None: "
                                          "MONTAGE_WEBHOOK_SECRET, else one generated once and kept in Redis")


OpenAIQuality = Literal["low", "medium", "high", "auto", "standard", "hd"]  # gpt-image-1's, then dall-e-3's


class OpenAIArgs(_Strict):
    """The OpenAI-compatible Images and Videos APIs under /openai/v1."""

    models: dict[str, Literal[families_with("generate")]] = Field(
        default_factory=lambda: {"dall-e-2": "sdxl", "dall-e-3": "flux", "gpt-image-1": "flux"},
        description="model aliases → image family (a family's own name always works)")
    wait_s: float = Field(default=300, gt=0, le=600, description="how long a call waits for its images (then 504)")
    video_models: dict[str, Literal[families_with("animate")]] = Field(
        default_factory=lambda: {"sora-2": "wan", "sora-2-pro": "wan"},
        description="video model aliases → video family (a family's own name always works; none given: wan)")
    quality_steps: dict[OpenAIQuality, float] = Field(
        default_factory=lambda: {"low": 0.5, "medium": 1.0, "auto": 1.0, "standard": 1.0, "high": 1.5, "hd": 1.5},
        description="`quality` → steps, as a multiple of the family's default steps (at least 1, at most 100)")


class AssetStoreArgs(_Strict):
    """Where asset bytes live, as the app args say it; what they leave unset each process reads from its environment
    (`records.blobs.open_blobs`)."""

    url: str | None = Field(default=None, pattern=OBJECT_STORE_URL)
    folder: Path | None = None
    max_bytes: int = Field(default=2**30, ge=2**20)


class CredentialsArgs(_Strict):
    """Content credentials: a C2PA manifest signed onto every delivered image and video, and an invisible watermark
    in their pixels. Without `cert` and `key`, a development chain is generated once under MONTAGE_DATA_DIR."""

    enabled: bool = Field(default=True, description="sign and watermark outputs (false: neither)")
    cert: Path | None = Field(default=None, description="PEM certificate chain: the signing certificate first, then "
                                                       "its issuers (C2PA refuses a self-signed end-entity one)")
    key: Path | None = Field(default=None, description="PEM private key of the signing certificate (ES256, P-256)")
    include_prompt: bool = Field(default=False, description="put the prompt itself into manifests (prompts can be "
                                                            "private: by default only the prompt key)")
    signer: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                               description="'module:function' signing hook instead of `key` (a KMS or HSM client): "
                                           "called with the bytes to sign, it returns their ES256 signature; `cert` "
                                           "is the chain of the key it holds")

    @field_validator("cert")
    @classmethod
    def _cert_valid_now(cls, value: Path | None) -> Path | None:
        if value is not None:
            _check_certificate(value)
        return value

    @field_validator("key")
    @classmethod
    def _key_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no key file at {value}")
        return value

    @model_validator(mode="after")
    def _cert_with_key(self) -> CredentialsArgs:
        if self.signer is not None:
            if self.cert is None or self.key is not None:
                raise ValueError("credentials.signer goes with credentials.cert (its key's chain) and no "
                                 "credentials.key (the hook holds the key)")
        elif (self.cert is None) != (self.key is None):
            raise ValueError("credentials.cert and credentials.key go together (or neither: a development chain)")
        return self


def _check_certificate(path: Path) -> None:
    """The first certificate of a PEM chain is readable and valid now."""
    from cryptography import x509

    if not path.is_file():
        raise ValueError(f"no certificate file at {path}")
    try:
        certificate = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except ValueError as exc:
        raise ValueError(f"{path} is not a PEM certificate chain: {exc}") from None
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ValueError(f"the certificate in {path} is valid from {certificate.not_valid_before_utc:%Y-%m-%d} to "
                         f"{certificate.not_valid_after_utc:%Y-%m-%d}, not now (expired or not yet valid)")


class CompositionArgs(_Strict):
    """Workflow-level settings shared by the ingress and the runners."""

    asset_dir: Path | None = Field(default=None, description="None: MONTAGE_ASSET_DIR (var/assets)")
    asset_url: str | None = Field(default=None, pattern=OBJECT_STORE_URL,
                                  description="s3://bucket/prefix (or gs://, az://): asset bytes in an object store, "
                                              "not in asset_dir; None: MONTAGE_ASSET_URL unless asset_dir is set")
    asset_redirect_s: int | None = Field(default=None, ge=1, le=7 * 86400,
                                         description="with an object store: GET /v1/assets/{id} redirects (307) to "
                                                     "a signed URL valid this long; None: bytes stream via the ingress")
    max_asset_bytes: int = Field(default=2**30, ge=2**20, description="largest asset stored or read back whole")
    max_upload_bytes: int = Field(default=10 * 2**20, ge=1024)
    max_json_bytes: int = Field(default=2**20, ge=1024, description="largest JSON request body")
    max_json_depth: int = Field(default=32, ge=2, description="deepest nesting of a JSON request body")
    variant_cap: int = Field(default=8, ge=1, le=1000, description="most variants generated per prompt key")
    recent_landmarks: int = Field(default=3, ge=0, description="landmarks per soul/user/city avoided next time")
    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    task_ttl_s: int = Field(default=7 * 86_400, ge=60, description="how long finished task records are kept")
    dedup: DedupArgs = Field(default_factory=DedupArgs)
    reuse: ReuseArgs = Field(default_factory=ReuseArgs)
    webhooks: WebhookArgs = Field(default_factory=WebhookArgs)
    access: AccessArgs = Field(default_factory=lambda: AccessArgs())
    openai: OpenAIArgs = Field(default_factory=OpenAIArgs)
    credentials: CredentialsArgs = Field(default_factory=CredentialsArgs)
    keyframe_model: Literal[families_with("generate")] = Field(
        default="flux", description="text to video: the image family that makes the keyframe a clip then animates")

    @property
    def asset_store(self) -> AssetStoreArgs:
        """The asset store's location, which the image replicas share too (uploaded LoRA adapters)."""
        return AssetStoreArgs(url=self.asset_url, folder=self.asset_dir, max_bytes=self.max_asset_bytes)


QuotaKind = Literal["images", "videos", "storyboards"]


class TierArgs(_Strict):
    """What a tier of API keys gets: a priority lane and a weight within it, daily quotas and a token-bucket rate
    limit."""

    lane: Lane = "normal"
    weight: float = Field(default=1.0, gt=0.0, le=100.0,
                          description="a user's share of the lane's model steps against other users' (weighted "
                                      "round-robin in each diffusion replica: weight 3 gets 3 steps to 1's one)")
    daily: dict[QuotaKind, int] = Field(default_factory=dict, description="kind → tasks per UTC day; absent: no limit")
    daily_gpu_seconds: float | None = Field(default=None, gt=0.0,
                                            description="device seconds a user's tasks may use per UTC day (a "
                                                        "request once they are spent is a 429); None: no limit")
    rate_per_s: float = Field(default=5.0, gt=0, description="sustained requests per second")
    burst: int = Field(default=20, ge=1, description="bucket size: requests allowed at once")
    admin: bool = Field(default=False, description="may change runtime settings and run warm-ups")


def _default_tiers() -> dict[str, TierArgs]:
    return {
        "free": TierArgs(lane="low", daily={"images": 100, "videos": 10, "storyboards": 2}, rate_per_s=1, burst=5),
        "pro": TierArgs(lane="normal", daily={"images": 2000, "videos": 200, "storyboards": 50}, rate_per_s=10,
                        burst=40),
        "studio": TierArgs(lane="high", rate_per_s=50, burst=200),
        "admin": TierArgs(lane="high", rate_per_s=50, burst=200, admin=True),
    }


class AccessArgs(_Strict):
    """Auth and tiers. `required` (or MONTAGE_AUTH=required) makes API routes need `Authorization: Bearer <key>`."""

    auth: Literal["off", "required"] | None = Field(default=None, description="None: MONTAGE_AUTH, else off")
    tiers: dict[str, TierArgs] = Field(default_factory=_default_tiers)
    session_ttl_s: int = Field(default=900, ge=10, le=86_400,
                               description="lifetime of a web page's session cookie (POST /v1/session), which "
                                           "stands for the key on media downloads and task streams only")
