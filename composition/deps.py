"""FastAPI dependencies: the replica's services and workflows, and common headers."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from composition.services import Services
from composition.workflows.registry import Workflows
from config.ids import HEX_ID, NAME_ID


def _services(request: Request) -> Services:
    return request.app.state.services


def _workflows(request: Request) -> Workflows:
    return request.app.state.workflows


ServicesDep = Annotated[Services, Depends(_services)]
WorkflowsDep = Annotated[Workflows, Depends(_workflows)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[\x21-\x7e]+$")]
IdPath = Annotated[str, Path(pattern=NAME_ID, description="letters, digits, _ . -")]
TaskIdPath = Annotated[str, Path(pattern=HEX_ID, description="a task id")]
AssetIdPath = Annotated[str, Path(pattern=HEX_ID, description="an asset id")]
