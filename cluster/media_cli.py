"""`montage generate | edit | fork | video | storyboard`: one generation through the Python client (`client/`), its task
followed over server-sent events with a progress bar (stage, step, ETA), Ctrl-C cancelling it, its results written as
files (their paths printed on stdout, one a line; progress and messages go to stderr). `montage adapters add | rm`:
a LoRA adapter uploaded to, or removed from, an image family."""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from config.acceleration import Acceleration
from config.composition import LANES
from config.specs import families_with
from models.formats import ImageFormat, VideoFormat

if TYPE_CHECKING:
    from rich.console import Console

    from client import Montage, TaskEvent, TaskHandle
    from client.api import Result

CANCELLED_RC = 130  # as a shell reports a command ended by SIGINT


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """The generation commands, each with `--url`, `--key` and `--priority`."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default="http://127.0.0.1:8000", help="the Montage server (%(default)s)")
    server.add_argument("--key", default=os.environ.get("MONTAGE_API_KEY"),
                        help="API key, when the server requires one (default: $MONTAGE_API_KEY)")
    server.add_argument("--priority", choices=LANES, help="the task's lane, at most the key's tier's (default: the "
                                                          "tier's; auth off: normal)")
    generate = commands.add_parser("generate", parents=[server], help="text to images, written to a folder")
    generate.add_argument("prompt")
    generate.add_argument("--image", help="a source image (a file or an asset id): image to image")
    _model_options(generate, "with --image: 0 (the source) to 1 (text to image)")
    _acceleration_option(generate)
    inpaint = commands.add_parser("inpaint", parents=[server], help="repaint the white area of --mask (or the "
                                                                    "image's transparent pixels), keep the rest")
    for name in ("image", "prompt"):
        inpaint.add_argument(name)
    inpaint.add_argument("--mask", help="a PNG of the image's size, white = repaint (a file or an asset id)")
    _model_options(inpaint, "0 to 1 (default 1: the masked area from noise)")
    outpaint = commands.add_parser("outpaint", parents=[server], help="extend an image's canvas and paint the new "
                                                                      "area")
    outpaint.add_argument("image")
    outpaint.add_argument("prompt")
    for side in ("left", "right", "top", "bottom"):
        outpaint.add_argument(f"--{side}", type=int, help=f"pixels added on the {side}")
    outpaint.add_argument("--aspect", help='"W:H": widen or heighten to it instead of margins')
    outpaint.add_argument("--model", choices=families_with("generate"))
    _image_options(outpaint, sized=False)  # the canvas comes from the margins or aspect
    upscale = commands.add_parser("upscale", parents=[server], help="enlarge an image ×2 or ×4 (tiled, on SDXL)")
    upscale.add_argument("image")
    upscale.add_argument("--scale", type=int, choices=(2, 4), default=2)
    upscale.add_argument("--prompt", help="what the image shows (helps the tiles)")
    upscale.add_argument("--strength", type=float, help="how much each tile is repainted (default 0.35)")
    _image_options(upscale, sized=False)  # the size is the image's × scale
    edit = commands.add_parser("edit", parents=[server], help="edit an image (a file or an asset id) by instruction")
    edit.add_argument("image")
    edit.add_argument("prompt")
    _image_options(edit)
    _acceleration_option(edit)
    fork = commands.add_parser("fork", parents=[server], help="more like a finished image task: a new image from "
                                                              "its state after --step (a seed re-noises it)")
    fork.add_argument("task_id")
    fork.add_argument("--step", type=int, help="one of the steps the task keeps (default: the middle one)")
    fork.add_argument("--seed", type=int)
    fork.add_argument("--strength", type=float, help="with --seed: how much noise (default 0.3)")
    fork.add_argument("--prompt", help="default: the task's prompt")
    fork.add_argument("--lora", action="append", type=_lora, dest="loras", metavar="ID[:SCALE]")
    fork.add_argument("-o", "--output", type=Path, default=Path("."), help="folder (default: the current one)")
    video = commands.add_parser("video", parents=[server], help="animate an image (a file or an asset id), or a "
                                                                "keyframe made from --prompt")
    video.add_argument("image", nargs="?", help="none: text to video from --prompt")
    video.add_argument("--prompt")
    video.add_argument("--model", choices=families_with("animate"))
    video.add_argument("--frames", type=int, dest="num_frames")
    video.add_argument("--fps", type=int)
    video.add_argument("--steps", type=int)
    video.add_argument("--seed", type=int)
    video.add_argument("--gif", action="store_true", help="also write a GIF beside the video")
    _acceleration_option(video)
    video.add_argument("--format", choices=get_args(VideoFormat), dest="output_format",
                       help="mp4 (H.264), webm (VP9) or gif (default: the extension of -o, else mp4)")
    video.add_argument("-o", "--output", help="the video's path, or a folder (existing, or written with a trailing /) "
                                              "for <image name>.<format> (default: that name here)")
    board = commands.add_parser("storyboard", parents=[server],
                                help="a theme (or a script: --script) to scenes, keyframes, clips, one video")
    board.add_argument("theme", nargs="?", help="what the storyboard is about")
    board.add_argument("--script", type=Path, help="a text file of the script to stage, in place of a theme (-: stdin)")
    board.add_argument("--scenes", type=int, dest="num_scenes")
    board.add_argument("--style")
    board.add_argument("--scene-seconds", type=float)
    board.add_argument("--fps", type=int)
    _size_options(board)
    board.add_argument("-o", "--output", type=Path, help="folder (default: the theme's words joined by dashes)")
    adapters = commands.add_parser("adapters", help="LoRA adapters over HTTP: add a .safetensors file, rm an upload")
    adapter_commands = adapters.add_subparsers(dest="action", required=True)
    add = adapter_commands.add_parser("add", parents=[server], help="upload FILE to FAMILY (prints its entry)")
    add.add_argument("family", choices=families_with("generate"))
    add.add_argument("file", type=Path)
    add.add_argument("--id", dest="adapter_id", help="default: the file's name without .safetensors")
    remove = adapter_commands.add_parser("rm", parents=[server], help="remove an uploaded adapter")
    remove.add_argument("family", choices=families_with("generate"))
    remove.add_argument("adapter_id", metavar="id")


def _model_options(parser: argparse.ArgumentParser, strength: str) -> None:
    """--model and --strength (what `strength` says it does), then the image options."""
    parser.add_argument("--model", choices=families_with("generate"))
    parser.add_argument("--strength", type=float, help=strength)
    _image_options(parser)


def _image_options(parser: argparse.ArgumentParser, sized: bool = True) -> None:
    parser.add_argument("-n", type=int, help="how many images (variants)")
    parser.add_argument("--format", choices=get_args(ImageFormat), dest="output_format",
                        help="png (default), jpeg or webp")
    parser.add_argument("--quality", type=int, help="jpeg and webp: 1 to 100 (default 90)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--lora", action="append", type=_lora, dest="loras", metavar="ID[:SCALE]",
                        help="a LoRA adapter (GET /v1/adapters lists them), repeatable; scale 1 unless given")
    if sized:
        _size_options(parser)
    parser.add_argument("-o", "--output", type=Path, default=Path("."), help="folder (default: the current one)")


def _acceleration_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--acceleration", choices=get_args(Acceleration),
                        help="step_cache: skip steps the denoiser barely changes (flux and wan; default none)")


def _lora(value: str) -> dict[str, Any]:
    adapter, colon, scale = value.partition(":")
    try:
        return {"id": adapter, "scale": float(scale)} if colon else {"id": adapter}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: ID or ID:SCALE, the scale a number") from None


def _size_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)


def main_media(args: argparse.Namespace) -> int:
    """Submits the command's generation, follows it, writes its files; 1 on an API error or a failed task, 130 when
    Ctrl-C cancelled it."""
    import httpx
    from rich.console import Console

    from client import Montage, MontageError

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cancels even where SIGINT was ignored
    console = Console(stderr=True, highlight=False)
    try:
        with Montage(args.url, args.key) as montage:
            return COMMANDS[args.command](montage, args, console)
    except MontageError as exc:
        named = not exc.field or exc.message.startswith(f"{exc.field}:")
        console.print(f"error: {exc.message if named else f'{exc.field}: {exc.message}'}", markup=False)
        return 1
    except httpx.TransportError as exc:
        console.print(f"error: cannot reach Montage at {args.url} ({type(exc).__name__})", markup=False)
        return 1
    except OSError as exc:  # a local file to upload or a result's path
        console.print(f"error: {exc.filename or ''}: {exc.strerror or exc}", markup=False)
        return 1
    except KeyboardInterrupt:  # before the task was known, or while its files were written
        console.print("interrupted")
        return CANCELLED_RC


def _generate(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    handle = montage.generate(args.prompt, model=args.model, n=args.n, steps=args.steps, seed=args.seed,
                              width=args.width, height=args.height, loras=args.loras, priority=args.priority,
                              image=args.image, strength=args.strength, **_encoding(args), **_accelerated(args))
    return _images(montage, handle, args, console)


def _inpaint(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    handle = montage.inpaint(args.image, args.prompt, mask=args.mask, model=args.model, n=args.n, steps=args.steps,
                             seed=args.seed, width=args.width, height=args.height, loras=args.loras,
                             strength=args.strength, priority=args.priority, **_encoding(args))
    return _images(montage, handle, args, console)


def _edit(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    handle = montage.edit(args.image, args.prompt, n=args.n, steps=args.steps, seed=args.seed, width=args.width,
                          height=args.height, loras=args.loras, priority=args.priority, **_encoding(args),
                          **_accelerated(args))
    return _images(montage, handle, args, console)


def _fork(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    handle = montage.fork(args.task_id, args.step, seed=args.seed, strength=args.strength, prompt=args.prompt,
                          loras=args.loras, priority=args.priority)
    return _images(montage, handle, args, console, f"fork-{args.task_id[:8]}-{args.step or 'mid'}")


def _outpaint(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    margins = {side: getattr(args, side) for side in ("left", "right", "top", "bottom")}
    handle = montage.outpaint(args.image, args.prompt, model=args.model, n=args.n, steps=args.steps, seed=args.seed,
                              aspect=args.aspect, loras=args.loras, priority=args.priority, **margins,
                              **_encoding(args))
    return _images(montage, handle, args, console)


def _upscale(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    handle = montage.upscale(args.image, scale=args.scale, prompt=args.prompt, strength=args.strength, n=args.n,
                             steps=args.steps, seed=args.seed, loras=args.loras, priority=args.priority,
                             **_encoding(args))
    return _images(montage, handle, args, console)


def _images(montage: Montage, handle: TaskHandle, args: argparse.Namespace, console: Console,
            stem: str | None = None) -> int:
    if (result := _follow(handle, console)) is None:
        return CANCELLED_RC
    for number, image in enumerate(result.images, 1):
        print(montage.download(image, args.output, f"{stem or _slug(args.prompt or 'upscaled', 'image')}-{number}"))
    return 0


def _encoding(args: argparse.Namespace) -> dict[str, Any]:
    """The image options given (left out, the server's defaults hold)."""
    return {name: getattr(args, name) for name in ("output_format", "quality") if getattr(args, name) is not None}


def _accelerated(args: argparse.Namespace) -> dict[str, Any]:
    """--acceleration where given (left out, the server's default holds)."""
    return {"acceleration": args.acceleration} if args.acceleration else {}


def _video(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    given = args.output
    folder = given is not None and (given.endswith(("/", os.sep)) or Path(given).is_dir())
    suffix = "" if given is None or folder else Path(given).suffix.lstrip(".").lower()
    if suffix and suffix not in (formats := get_args(VideoFormat)):
        console.print(f"error: -o {given}: a video is .{', .'.join(formats[:-1])} or .{formats[-1]}, not .{suffix}",
                      markup=False)
        return 1
    if args.output_format and suffix and suffix != args.output_format:
        console.print(f"error: --format {args.output_format}: -o names a .{suffix} file", markup=False)
        return 1
    fmt = args.output_format or suffix or "mp4"
    name = f"{Path(args.image).stem if args.image else _slug(args.prompt or '', 'video')}.{fmt}"
    path = Path(given) / name if folder else Path(given or name)
    handle = montage.video(args.image, model=args.model, prompt=args.prompt, num_frames=args.num_frames, fps=args.fps,
                           steps=args.steps, seed=args.seed, gif=args.gif, output_format=fmt, priority=args.priority,
                           **_accelerated(args))
    if (result := _follow(handle, console)) is None:
        return CANCELLED_RC
    print(montage.download(result.video, path))
    if result.gif and fmt != "gif":
        print(montage.download(result.gif, path.with_suffix(".gif")))
    return 0


def _storyboard(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    script = None
    if args.script is not None:
        script = sys.stdin.read() if str(args.script) == "-" else args.script.read_text(errors="replace")
    handle = montage.storyboard(args.theme, script=script, num_scenes=args.num_scenes, style=args.style,
                                scene_seconds=args.scene_seconds, fps=args.fps, width=args.width, height=args.height,
                                priority=args.priority)
    if (result := _follow(handle, console)) is None:
        return CANCELLED_RC
    folder = args.output or Path(_slug(args.theme or script or "", "storyboard"))
    files = [(result.video, "video"), (result.gif, "video"), (result.export.json_, "storyboard"),
             (result.export.text, "storyboard")]
    files += [(frame, f"keyframe-{number}") for number, frame in enumerate(result.keyframes, 1)]
    files += [(clip, f"clip-{number}") for number, clip in enumerate(result.clips, 1)]
    for asset, stem in files:
        print(montage.download(asset, folder, stem))
    return 0


def _follow(handle: TaskHandle[Result], console: Console) -> Result | None:
    """The task's result, with its progress shown; None when Ctrl-C cancelled it (the task is cancelled)."""
    if handle.id is None:
        console.print("cached: no model work needed")
        return handle.result()
    console.print(f"task {handle.id}", markup=False)
    try:
        with TaskProgress(console) as progress:
            return handle.result(on_event=progress.update)
    except KeyboardInterrupt:
        console.print(f"cancelling task {handle.id}", markup=False)
        record = handle.cancel()
        console.print(f"task {record.id} {record.status}", markup=False)
        return None


class TaskProgress:
    """Shows a task's events: on an interactive terminal a live bar (stage, progress, step, ETA), drawn at every event;
    elsewhere a line per change of stage or step. The ETA is the server's while the task waits for a model (`eta_s`),
    else the pace of its stage since it began or its wait ended."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console, self.live = console, console.is_interactive
        self.bar = Progress(TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[step]:<11}"), TextColumn("ETA {task.fields[eta]}"),
                            TimeElapsedColumn(), console=console, transient=False)
        self.row = self.bar.add_task("queued", total=1.0, step="", eta="-", visible=self.live)
        self.stage, self.stage_since, self.stage_from, self.shown = "queued", time.monotonic(), 0.0, ("", "")
        self.waiting = False

    def __enter__(self) -> TaskProgress:
        if self.live:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.bar.stop()

    def update(self, event: TaskEvent) -> None:
        if event.event != "message" or event.stage is None:
            return  # previews and checkpoints
        now, progress = time.monotonic(), event.progress or 0.0
        if event.stage != self.stage or (self.waiting and not event.waiting_for):  # a storyboard waits in its stage
            self.stage, self.stage_since, self.stage_from = event.stage, now, progress
        self.waiting = bool(event.waiting_for)
        step = f"step {event.step}/{event.steps}" if event.steps else ""
        if event.eta_s is not None:
            eta = f"{event.eta_s:.0f}s"
        elif progress > self.stage_from and progress < 1:
            eta = f"{(now - self.stage_since) * (1 - progress) / (progress - self.stage_from):.0f}s"
        else:
            eta = "-"
        if event.queue_position:
            step = f"{event.queue_position} ahead"
        self.bar.update(self.row, description=event.stage, completed=progress, step=step, eta=eta, refresh=True)
        if not self.live and (event.stage, step) != self.shown:
            self.shown = (event.stage, step)
            line = " ".join(part for part in (event.stage, f"{progress:.0%}", step, f"ETA {eta}") if part)
            self.console.print(line, markup=False)


def _slug(text: str, default: str) -> str:
    """A file name from free text: its first ASCII words, lower case, joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or default


def _adapters(montage: Montage, args: argparse.Namespace, console: Console) -> int:
    if args.action == "add":
        print(montage.add_adapter(args.family, args.file, args.adapter_id).model_dump_json(exclude={"replicas"}))
    else:
        montage.remove_adapter(args.family, args.adapter_id)
        console.print(f"removed {args.family} adapter {args.adapter_id}", markup=False)
    return 0


COMMANDS = {"generate": _generate, "edit": _edit, "inpaint": _inpaint, "outpaint": _outpaint, "upscale": _upscale,
            "fork": _fork, "video": _video, "storyboard": _storyboard, "adapters": _adapters}
