"""A task record as the API shows it (`GET /v1/tasks/{id}`): its statuses, its fields and their reading from the
task hash. Pydantic only, so the client reads it as the server writes it; the hash and its transitions are
`records/tasks.py`'s."""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from config.composition import Lane

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("queued", "running", *TERMINAL)
JSON_FIELDS = ("result", "error", "request", "preview")  # the hash keeps these as JSON


def tier_weight(value: bytes | str | None) -> float:
    """A record's tier weight (its `weight` field); 1 when absent (a task queued before weights existed) or
    unreadable."""
    try:
        weight = float(value or 1.0)
    except ValueError:
        return 1.0
    return weight if 0.0 < weight < float("inf") else 1.0


class Preview(BaseModel):
    """A live task's newest step preview, as its SSE `preview` event carried it."""

    step: int
    steps: int
    image: str = Field(description="a JPEG data URL (at most 256 px; videos: a strip of frames)")


class TaskRecord(BaseModel):
    """A task as the API shows it (`GET /v1/tasks/{id}`)."""

    id: str
    kind: str
    status: Status
    stage: str
    progress: float = Field(description="0..1: the current stage's; a storyboard's: the whole task's, never going back")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: float
    updated_at: float
    user_id: str = ""
    lane: Lane = "normal"
    tier: str = Field(default="", description="the API key's tier (\"\" with auth off)")
    weight: float = Field(default=1.0, description="the tier's weight: its user's share of the lane's model steps")
    step: int | None = Field(default=None, description="the current stage's last model step done")
    steps: int | None = Field(default=None, description="the current stage's model steps")
    preview: Preview | None = Field(default=None, description="while the task runs: its newest step preview")
    attempts: int = 0
    started_at: float | None = None
    project_id: str | None = None
    request: dict[str, Any] | None = None
    waiting_for: str | None = Field(default=None, description="the model family whose replicas the task waits for")
    queue_position: int | None = Field(default=None, description="tasks waiting for that family ahead of this one")
    eta_s: float | None = Field(default=None, description="estimated seconds until its model work ends")
    rendered_by: str | None = Field(default=None, description="the task rendering the image (same prompt and seed) "
                                                              "this one waits for: meanwhile its progress, steps, "
                                                              "model wait and ETA are that task's")
    gpu_seconds: float | None = Field(default=None, description="device seconds its model work used so far")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> TaskRecord:
        data = {key.decode(): value.decode() for key, value in raw.items()}
        for name in JSON_FIELDS:
            data[name] = json.loads(data[name]) if data.get(name) else None
        data["weight"] = tier_weight(data.get("weight"))
        data["project_id"] = data.get("project_id") or None
        data["waiting_for"] = data.get("waiting_for") or None
        return cls.model_validate(data)

    def to_hash(self) -> dict[str, str]:
        """The hash fields `from_hash` reads back (what a finished task keeps; None fields left out)."""
        data = self.model_dump(exclude={"waiting_for", "queue_position", "eta_s", "rendered_by"}, exclude_none=True)
        return {name: json.dumps(value) if name in JSON_FIELDS else str(value) for name, value in data.items()}
