"""/openai/v1/videos: OpenAI's Videos API over the native video workflow (the same tasks, quotas, auth and limits):
create (text to video, or an uploaded reference animated), retrieve, list, download, delete and remix."""
from __future__ import annotations

import asyncio
import io
from typing import Annotated, Literal, cast

import numpy as np
from fastapi import APIRouter, Form, Path, Query, Response
from PIL import Image

from composition.auth import Principal, PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.errors import Conflict, NotFound
from composition.routers.assets import store_upload
from composition.schemas.openai_videos import (
    OpenAIVideo,
    OpenAIVideoCreate,
    OpenAIVideoDeleted,
    OpenAIVideoList,
    OpenAIVideoRemix,
    task_of,
    video_id,
)
from composition.schemas.videos import VideoGeneration, VideoOut, VideoRemix
from composition.services import Services
from composition.submit import Queued, enqueue
from composition.workflows.registry import Workflows
from composition.workflows.storyboards import clip_frames
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES
from models.media import decode_mp4
from models.types import MAX_FRAMES
from records.task_record import TaskRecord

router = APIRouter(prefix="/openai/v1/videos", tags=["openai"])
VideoIdPath = Annotated[str, Path(description="a video id: video_ + its task id (any other is a 404, as OpenAI's)")]
THUMBNAIL_SIDE = 512
SPRITES = 16  # frames in a sprite sheet, 4 a row


@router.post("")
async def create(body: Annotated[OpenAIVideoCreate, Form(media_type="multipart/form-data")], services: ServicesDep,
                 workflows: WorkflowsDep, principal: PrincipalDep,
                 idempotency_key: IdempotencyKey = None) -> OpenAIVideo:
    """`videos.create`: a video task, answered at once as it stands (`queued`, or `in_progress` when a runner took it
    already; poll `videos.retrieve`)."""
    family = body.family(services.args.openai)
    image = None
    if body.input_reference is not None:
        image = (await store_upload(services, body.input_reference, principal.user(body.user) or "",
                                    "input_reference")).id
    frames = None
    if body.seconds is not None:
        fps, multiple = services.defaults_of(family).fps, (await services.info(family))["frame_multiple"]
        frames = clip_frames(int(body.seconds), fps, multiple)
        if not 2 <= frames <= MAX_FRAMES:
            raise InvalidRequest("seconds", f"{body.seconds} s is {frames} frames at {fps} fps; {family} makes 2 to "
                                            f"{MAX_FRAMES}")
    native = body.to_native(family, image, frames)
    return await _submitted(services, principal, workflows, native, idempotency_key)


@router.get("")
async def list_videos(services: ServicesDep, principal: PrincipalDep,
                      after: Annotated[str | None, Query(max_length=64)] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      order: Annotated[Literal["asc", "desc"], Query()] = "desc") -> OpenAIVideoList:
    """`videos.list`: the caller's videos (the newest 500), a page after the video `after` (found by its place even
    when it was deleted since, so a client paging on never starts over)."""
    records = await services.tasks.list(principal.user_id, None, "video", 500)
    if order == "asc":
        records.reverse()
    ids = [video_id(record.id) for record in records]
    if after is not None and after not in ids:
        raise InvalidRequest("after", f"no video {after} in this list")
    start = ids.index(after) + 1 if after else 0
    rest = [record for record, gone in zip(records[start:], await services.tasks.deleted(
        [record.id for record in records[start:]]), strict=True) if not gone]
    page = [OpenAIVideo.of(record, services.args.task_ttl_s) for record in rest[:limit]]
    return OpenAIVideoList(data=page, first_id=page[0].id if page else None, last_id=page[-1].id if page else None,
                           has_more=len(rest) > limit)


@router.get("/{video_id}")
async def retrieve(video_id: VideoIdPath, services: ServicesDep, principal: PrincipalDep) -> OpenAIVideo:
    return OpenAIVideo.of(await _video(services, principal, video_id), services.args.task_ttl_s)


@router.get("/{video_id}/content", response_class=Response,
            responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}}})
async def content(video_id: VideoIdPath, services: ServicesDep, principal: PrincipalDep,
                  variant: Annotated[Literal["video", "thumbnail", "spritesheet"], Query()] = "video") -> Response:
    """`videos.download_content`: the clip, a JPEG of its keyframe (`thumbnail`) or a sheet of its frames."""
    record = await _video(services, principal, video_id)
    if record.status != "succeeded":
        raise Conflict("video_id", f"video {video_id} is {OpenAIVideo.of(record, 0).status}, not completed")
    out = VideoOut.model_validate(record.result)
    if variant == "video":
        data = await services.asset_bytes(out.video.asset_id, "video_id", principal.user_id)
        return Response(data, media_type=MEDIA_TYPES[out.format])
    if variant == "thumbnail":
        source = out.keyframe.asset_id if out.keyframe else record.request["image"]
        image = Image.open(io.BytesIO(await services.asset_bytes(source, "video_id", principal.user_id)))
        return Response(await asyncio.to_thread(_jpeg, image, THUMBNAIL_SIDE), media_type="image/jpeg")
    clip = await services.asset_bytes(out.video.asset_id, "video_id", principal.user_id)
    return Response(await asyncio.to_thread(_sprite_sheet, clip), media_type="image/jpeg")


@router.delete("/{video_id}")
async def delete(video_id: VideoIdPath, services: ServicesDep, principal: PrincipalDep) -> OpenAIVideoDeleted:
    """`videos.delete`: the video is gone from this API (its content then 404s); a running one is cancelled."""
    record = await _video(services, principal, video_id)
    if not record.terminal:
        await services.tasks.cancel(record.id)
    await services.tasks.delete(record.id)
    return OpenAIVideoDeleted(id=video_id)


@router.post("/{video_id}/remix")
async def remix(video_id: VideoIdPath, body: OpenAIVideoRemix, services: ServicesDep, workflows: WorkflowsDep,
                principal: PrincipalDep, idempotency_key: IdempotencyKey = None) -> OpenAIVideo:
    """`videos.remix`: a new video of the same source image (a text-to-video's keyframe) and settings, with the new
    prompt."""
    record = await _video(services, principal, video_id)
    job = record.request
    source = job["image"]
    if job.get("keyframe"):
        if record.status != "succeeded":
            raise Conflict("video_id", f"video {video_id} has no keyframe yet: remix it once it is completed")
        source = VideoOut.model_validate(record.result).keyframe.asset_id
    native = VideoRemix.model_validate({
        "image": source, "prompt": body.prompt, "user_id": record.user_id or None, "remixed_from": record.id, **{
            name: job[name] for name in ("model", "num_frames", "fps", "steps", "seed", "gif", "width", "height",
                                         "output_format")}})
    return await _submitted(services, principal, workflows, native, idempotency_key)


async def _submitted(services: Services, principal: Principal, workflows: Workflows, native: VideoGeneration,
                     idempotency_key: str | None) -> OpenAIVideo:
    """The video task of a native body (video requests are never answered from a cache), as a video object."""
    queued = cast(Queued, await enqueue(services, principal, workflows.videos, native, idempotency_key))
    return OpenAIVideo.of(await services.tasks.get(queued.task_id), services.args.task_ttl_s)


async def _video(services: Services, principal: Principal, video: str) -> TaskRecord:
    """The caller's video task; 404 naming `video_id` for another user's, a deleted one, any other task or an id of
    another shape."""
    if (task_id := task_of(video)) is None:
        raise NotFound(f"video {video[:80]}", "video_id")
    record = await services.tasks.get(task_id)
    if (record is None or record.kind != "video" or (principal.user_id and record.user_id != principal.user_id)
            or (await services.tasks.deleted([record.id]))[0]):
        raise NotFound(f"video {video}", "video_id")
    return record


def _jpeg(image: Image.Image, side: int) -> bytes:
    image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _sprite_sheet(clip: bytes) -> bytes:
    """Up to 16 frames spread over the clip, 4 a row, as one JPEG."""
    frames = decode_mp4(clip)
    picked = frames[np.linspace(0, len(frames) - 1, min(SPRITES, len(frames))).round().astype(int)]
    rows = -(-len(picked) // 4)
    height, width = picked.shape[1:3]
    sheet = np.zeros((rows * height, min(4, len(picked)) * width, 3), np.uint8)
    for index, frame in enumerate(picked):
        row, column = divmod(index, 4)
        sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = frame
    return _jpeg(Image.fromarray(sheet), 4 * THUMBNAIL_SIDE)
