"""`Montage(url, key)`: submit a generation, follow its task over server-sent events, download what it made.

Requests are checked against the API's own request schemas before they are sent and answers are parsed into its
result schemas (`composition/schemas/`), so the client and the server share one definition of every shape:

    with Montage("http://127.0.0.1:8000") as montage:
        result = montage.generate("a red kite", model="flux", n=2).result()   # follows /v1/tasks/{id}/events
        paths = [montage.download(image, "out/") for image in result.images]
"""
from __future__ import annotations

import json
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from client import sse
from composition.schemas.adapters import AdapterOut
from composition.schemas.assets import AssetInfo
from composition.schemas.common import Accepted, AssetRef, ErrorEnvelope, ImageModel, VideoModel, sent_instead
from composition.schemas.forks import ForkBody
from composition.schemas.images import (ImageEdit, ImageGeneration, ImageInpaint, ImageOutpaint, ImagesResult,
                                        ImageUpscale)
from composition.schemas.storyboards import StoryboardBody, StoryboardOut
from composition.schemas.videos import VideoGeneration, VideoOut
from config.composition import Lane
from config.ids import HEX_ID
from records.task_record import TERMINAL, Status, TaskRecord

DEFAULT_URL = "http://127.0.0.1:8000"
RECONNECTS = 5  # an event stream that drops before the task ends is opened again (it restarts with the task's state)
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the server sends the task's state at least every 15 s
Result = TypeVar("Result", bound=BaseModel)
Image = str | Path | bytes  # an asset id, a local file, or an image's bytes


class MontageError(Exception):
    """An error answer of the API (`{"error": {code, message, field}}`), or a request its schemas refuse before it
    is sent (status 422, as the server would answer)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class TaskFailed(MontageError):
    """The task ended `failed` or `cancelled`; `record` is its final state."""

    def __init__(self, record: TaskRecord) -> None:
        error = record.error or {}
        super().__init__(error.get("status", 409), error.get("code", record.status),
                         error.get("message", f"task {record.id} {record.status}"), error.get("field"))
        self.record = record


class TaskEvent(BaseModel):
    """One event of `/v1/tasks/{id}/events`: the task's state (first, last and on every change of status), a step
    of its model work (`step` of `steps` in `stage`), or a named `preview` (a JPEG data URL) or `checkpoint`."""

    model_config = ConfigDict(extra="allow")

    event: str = "message"
    id: str
    status: Status | None = None
    stage: str | None = None
    progress: float | None = None
    step: int | None = None
    steps: int | None = None
    eta_s: float | None = None
    queue_position: int | None = None
    waiting_for: str | None = None

    @property
    def terminal(self) -> bool:
        return self.event == "message" and self.status in TERMINAL


class TaskHandle(Generic[Result]):
    """A submitted generation: its task, or its result at once when the API answered 200 (a cached result)."""

    def __init__(self, montage: Montage, result_type: type[Result], task_id: str | None = None,
                 ready: Result | None = None) -> None:
        self.montage, self.result_type, self.id, self.ready = montage, result_type, task_id, ready

    def events(self) -> Iterator[TaskEvent]:
        """The task's events until it ends; none for a result answered at once."""
        if self.id is not None:
            yield from self.montage.events(self.id)

    def result(self, on_event: Callable[[TaskEvent], None] | None = None) -> Result:
        """Follows the task to its end (calling `on_event` with each event) and returns its typed result; raises
        `TaskFailed` when it failed or was cancelled."""
        if self.ready is not None:
            return self.ready
        for event in self.events():
            if on_event:
                on_event(event)
        record = self.montage.task(self.id)
        if record.status != "succeeded":
            raise TaskFailed(record)
        self.ready = self.result_type.model_validate(record.result)
        return self.ready

    def cancel(self) -> TaskRecord:
        """`DELETE /v1/tasks/{id}`: the model stops at its next step (a 409 `MontageError` once it has finished)."""
        return self.montage.cancel(self.id)


class Montage:
    """A session with one Montage server; `key` is an API key (sent as `Authorization: Bearer`), needed when the
    server requires auth. Every generation is sent with `wait_s` 0 unless given, so it comes back as a task to follow
    (or, when cached, as its result)."""

    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> Montage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def generate(self, prompt: str, *, model: ImageModel | None = None, n: int | None = None, wait_s: float = 0,
                 priority: Lane | None = None, image: Image | None = None, **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/images/generations`; `priority` is the task's lane (high, normal, low; capped by the key's
        tier); `image` (an asset id, a local file or image bytes) makes it image to image (`strength`); `options`
        are the request's other fields (width, height, steps, seed, style, negative_prompt, strength, user_id,
        project_id)."""
        body = _body(ImageGeneration, prompt=prompt, model=model, n=n, wait_s=wait_s, priority=priority,
                     image=None if image is None else self._asset(image), **options)
        return self._submit("/v1/images/generations", body, ImagesResult)

    def inpaint(self, image: Image, prompt: str, *, mask: Image | None = None, model: ImageModel | None = None,
                n: int | None = None, wait_s: float = 0, priority: Lane | None = None,
                **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/images/inpaint`: the mask's white pixels (none: the image's transparent ones) repainted, every
        other pixel kept; image and mask as asset ids, local files or bytes."""
        body = _body(ImageInpaint, image=self._asset(image), mask=None if mask is None else self._asset(mask),
                     prompt=prompt, model=model, n=n, wait_s=wait_s, priority=priority, **options)
        return self._submit("/v1/images/inpaint", body, ImagesResult)

    def outpaint(self, image: Image, prompt: str, *, model: ImageModel | None = None, n: int | None = None,
                 wait_s: float = 0, priority: Lane | None = None, **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/images/outpaint`: the image on a larger canvas (`left`, `right`, `top`, `bottom` or `aspect`
        among `options`), the new area painted."""
        body = _body(ImageOutpaint, image=self._asset(image), prompt=prompt, model=model, n=n, wait_s=wait_s,
                     priority=priority, **options)
        return self._submit("/v1/images/outpaint", body, ImagesResult)

    def upscale(self, image: Image, *, scale: int = 2, wait_s: float = 0, priority: Lane | None = None,
                **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/images/upscale`: ×2 or ×4 by tiled image to image on SDXL."""
        body = _body(ImageUpscale, image=self._asset(image), scale=scale, wait_s=wait_s, priority=priority, **options)
        return self._submit("/v1/images/upscale", body, ImagesResult)

    def edit(self, image: Image, prompt: str, *, n: int | None = None, wait_s: float = 0,
             priority: Lane | None = None, **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/images/edits` (FLUX Kontext) of an asset id, a local file or image bytes (uploaded first)."""
        body = _body(ImageEdit, image=self._asset(image), prompt=prompt, n=n, wait_s=wait_s, priority=priority,
                     **options)
        return self._submit("/v1/images/edits", body, ImagesResult)

    def fork(self, task_id: str, step: int | None = None, *, wait_s: float = 0, priority: Lane | None = None,
             **options: Any) -> TaskHandle[ImagesResult]:
        """`POST /v1/tasks/{task_id}/fork`: a new image from the finished task's kept state after `step` (None: the
        middle kept step); `options`: seed, strength, prompt, loras."""
        body = _body(ForkBody, step=step, wait_s=wait_s, priority=priority, **options)
        return self._submit(f"/v1/tasks/{task_id}/fork", body, ImagesResult)

    def video(self, image: Image | None = None, *, model: VideoModel | None = None, wait_s: float = 0,
              priority: Lane | None = None, **options: Any) -> TaskHandle[VideoOut]:
        """`POST /v1/videos/generations`: animates an asset id, a local file or image bytes (uploaded first), or
        with no image, a keyframe made from `prompt` (text to video); `options`: prompt, num_frames, fps, steps,
        seed, gif, width, height, user_id, project_id."""
        body = _body(VideoGeneration, image=None if image is None else self._asset(image), model=model,
                     wait_s=wait_s, priority=priority, **options)
        return self._submit("/v1/videos/generations", body, VideoOut)

    def storyboard(self, theme: str | None = None, *, script: str | None = None, num_scenes: int | None = None,
                   wait_s: float = 0, priority: Lane | None = None, **options: Any) -> TaskHandle[StoryboardOut]:
        """`POST /v1/storyboards` from a theme or a script; `options`: style, scene_seconds, fps, width, height."""
        body = _body(StoryboardBody, theme=theme, script=script, num_scenes=num_scenes, wait_s=wait_s,
                     priority=priority, **options)
        return self._submit("/v1/storyboards", body, StoryboardOut)

    def task(self, task_id: str) -> TaskRecord:
        """`GET /v1/tasks/{id}`."""
        return TaskRecord.model_validate(self._json(self.http.get(f"/v1/tasks/{task_id}")))

    def cancel(self, task_id: str) -> TaskRecord:
        """`DELETE /v1/tasks/{id}`."""
        return TaskRecord.model_validate(self._json(self.http.delete(f"/v1/tasks/{task_id}")))

    def events(self, task_id: str) -> Iterator[TaskEvent]:
        """The task's server-sent events until its terminal state; a stream that drops is opened again."""
        for attempt in range(RECONNECTS + 1):
            try:
                with self.http.stream("GET", f"/v1/tasks/{task_id}/events", timeout=STREAM_TIMEOUT) as response:
                    self._check(response)
                    for name, data in sse.parse(response.iter_lines()):
                        event = TaskEvent.model_validate({"event": name, **json.loads(data)})
                        yield event
                        if event.terminal:
                            return
            except (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError):
                if attempt == RECONNECTS:
                    raise
            time.sleep(min(2.0**attempt * 0.25, 4.0))
        raise MontageError(503, "unavailable", f"task {task_id}: its event stream ended {RECONNECTS + 1} times "
                                               "before the task did")

    def upload(self, image: Path | bytes) -> AssetInfo:
        """`POST /v1/assets`: a PNG, JPEG or WEBP file or its bytes."""
        data, name = (image, "image") if isinstance(image, bytes) else (Path(image).read_bytes(), Path(image).name)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return AssetInfo.model_validate(self._json(self.http.post("/v1/assets", files={"file": (name, data, kind)})))

    def add_adapter(self, family: str, file: Path | bytes, adapter_id: str | None = None) -> AdapterOut:
        """`POST /v1/adapters/{family}`: a LoRA `.safetensors` file or its bytes (admin keys when auth is on); its id is
        `adapter_id`, else the file's name without `.safetensors`."""
        data, name = (file, "adapter.safetensors") if isinstance(file, bytes) else (Path(file).read_bytes(),
                                                                                     Path(file).name)
        form = {"id": adapter_id} if adapter_id is not None else {}
        response = self.http.post(f"/v1/adapters/{family}", files={"file": (name, data)}, data=form)
        return AdapterOut.model_validate(self._json(response))

    def remove_adapter(self, family: str, adapter_id: str) -> None:
        """`DELETE /v1/adapters/{family}/{id}`: an uploaded adapter (admin keys when auth is on)."""
        self._check(self.http.delete(f"/v1/adapters/{family}/{adapter_id}"))

    def download(self, asset: AssetRef | str, dest: str | Path, stem: str | None = None) -> Path:
        """Streams an asset (a result's reference or its id) to a file and returns the path: `dest` itself, or,
        when `dest` is a folder (existing, or written with a trailing `/`) or `stem` is given,
        `dest/<stem or asset id><extension of its content type>`."""
        asset_id = asset if isinstance(asset, str) else asset.asset_id
        folder = stem is not None or str(dest).endswith(("/", os.sep)) or Path(dest).is_dir()
        dest = Path(dest)
        with self.http.stream("GET", f"/v1/assets/{asset_id}") as response:
            self._check(response)
            if folder:
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                dest = dest / f"{stem or asset_id}{mimetypes.guess_extension(kind) or '.bin'}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(f".{dest.name}.part")
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        return partial.replace(dest)

    def _asset(self, image: Image) -> str:
        """An asset id as it is, else the id of the uploaded file or bytes."""
        if isinstance(image, str) and re.fullmatch(HEX_ID, image) and not Path(image).exists():
            return image
        return self.upload(image if isinstance(image, bytes) else Path(image)).id

    def _submit(self, route: str, body: BaseModel, result_type: type[Result]) -> TaskHandle[Result]:
        response = self.http.post(route, json=body.model_dump(mode="json", exclude_unset=True))
        answer = self._json(response)
        if response.status_code == 202:
            return TaskHandle(self, result_type, task_id=Accepted.model_validate(answer).task_id)
        return TaskHandle(self, result_type, ready=result_type.model_validate(answer))

    @classmethod
    def _json(cls, response: httpx.Response) -> Any:
        """The answer's JSON, or the `MontageError` of its error envelope."""
        cls._check(response)
        return response.json()

    @staticmethod
    def _check(response: httpx.Response) -> None:
        """Raises the `MontageError` of an error answer (a streamed one is read first)."""
        if response.is_success:
            return
        response.read()
        try:
            error = ErrorEnvelope.model_validate_json(response.content).error
        except ValidationError:
            raise MontageError(response.status_code, "http_error", f"HTTP {response.status_code}: "
                                                                   f"{response.text[:200]}") from None
        raise MontageError(response.status_code, error.code, error.message, error.field)


def _body(schema: type[BaseModel], **fields: Any) -> BaseModel:
    """The request body, checked by the API's own schema (unset fields left to the server's defaults)."""
    try:
        return schema(**{name: value for name, value in fields.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ") + sent_instead(first)
        head = message.split(":", 1)[0]  # a model check's message starts with its field
        field = ".".join(str(part) for part in first["loc"]) or (head if head in schema.model_fields else None)
        raise MontageError(422, "invalid_request", message if message.startswith(f"{field}:")
                           else f"{field or 'request'}: {message}", field) from None
