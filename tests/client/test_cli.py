"""`montage generate | edit | inpaint | outpaint | upscale | fork | video | storyboard` as a user runs them: the CLI
in a subprocess against the session app, progress read from its SSE, the files it wrote decoded; Ctrl-C (SIGINT)
cancels the task."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from helpers import BASE, decode_png, png
from PIL import Image

from client import Montage
from composition.schemas.images import ImagesResult
from models.images import mask_png
from models.media import read_mp4

ROOT = Path(__file__).parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k != "MONTAGE_API_KEY"}, "PYTHONPATH": str(ROOT)}
GIF_HEADER = b"GIF89a"
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # EBML, Matroska's and WebM's header


def command(*args: str, url: str = BASE) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", *args, "--url", url]


def cli(cwd: Path, *args: str, url: str = BASE) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, url=url), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def task_id_of(stderr: str) -> str:
    return re.search(r"^task ([0-9a-f]{32})$", stderr, re.M).group(1)


def test_generate_writes_n_pngs_with_progress_from_sse(montage, tmp_path):
    done = cli(tmp_path, "generate", "a heron kite over salt flats", "--model", "flux", "-n", "2", "-o", "out/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["out/a-heron-kite-over-salt-flats-1.png", "out/a-heron-kite-over-salt-flats-2.png"]
    images = [(tmp_path / path).read_bytes() for path in done.stdout.split()]
    assert all(decode_png(data).size == (64, 64) for data in images) and images[0] != images[1]
    assert re.search(r"^denoising \d+% step \d+/\d+ ETA", done.stderr, re.M), done.stderr
    task_id = task_id_of(done.stderr)
    with Montage(BASE) as client:
        record = client.task(task_id)
        assert record.status == "succeeded"
        result = ImagesResult.model_validate(record.result)
        assert [image.asset_id for image in result.images] == [hashlib.sha256(d).hexdigest()[:32] for d in images]
        events = list(client.events(task_id))  # a finished task: its final state alone
        assert [(event.status, event.terminal) for event in events] == [("succeeded", True)]
        written = client.download(result.images[0], tmp_path)
        assert written == tmp_path / f"{result.images[0].asset_id}.png" and written.read_bytes() == images[0]
        fresh = client.download(result.images[1], f"{tmp_path}/fresh/")  # a trailing slash names a new folder
        assert fresh == tmp_path / "fresh" / f"{result.images[1].asset_id}.png" and fresh.read_bytes() == images[1]


def test_priority_sets_the_tasks_lane(montage, tmp_path):
    done = cli(tmp_path, "generate", "a pewter teapot on a windowsill", "--priority", "high", "--seed", "8")
    assert done.returncode == 0, done.stderr
    with Montage(BASE) as client:
        assert client.task(task_id_of(done.stderr)).lane == "high"
    refused = cli(tmp_path, "generate", "a pewter teapot", "--priority", "urgent")
    assert refused.returncode == 2 and "--priority: invalid choice: 'urgent'" in refused.stderr


def test_acceleration_reaches_the_request_and_a_family_without_a_step_cache_refuses_it(montage, tmp_path):
    (tmp_path / "dune.png").write_bytes(png(64, 64, seed=1502))
    done = cli(tmp_path, "video", "dune.png", "--model", "wan", "--frames", "5", "--steps", "6", "--seed", "3",
               "--acceleration", "step_cache", "-o", "dune.mp4")
    assert done.returncode == 0, done.stderr
    with httpx.Client(base_url=BASE, timeout=30) as session:
        task = session.get(f"/v1/tasks/{task_id_of(done.stderr)}").json()
    assert task["result"]["metadata"]["steps_skipped"] > 0  # 0 without the step cache
    refused = cli(tmp_path, "generate", "a tin robot", "--model", "sdxl", "--acceleration", "step_cache")
    assert refused.returncode == 1 and "acceleration" in refused.stderr, refused.stderr


def test_fork_writes_the_forked_image(montage, tmp_path):
    made = cli(tmp_path, "generate", "a copper weathervane on a barn", "--steps", "4", "--seed", "5")
    assert made.returncode == 0, made.stderr
    task_id = task_id_of(made.stderr)
    forked = cli(tmp_path, "fork", task_id, "--step", "2", "--seed", "9", "--strength", "0.9", "-o", "out/")
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.split() == [f"out/fork-{task_id[:8]}-2-1.png"]
    image = (tmp_path / forked.stdout.strip()).read_bytes()
    assert decode_png(image).size == (64, 64) and image != (tmp_path / made.stdout.strip()).read_bytes()
    gone = cli(tmp_path, "fork", task_id, "--step", "4")  # kept: 1, 2, 3
    assert gone.returncode == 1 and gone.stderr.startswith("error: step: task "), gone.stderr
    middle = cli(tmp_path, "fork", task_id, "--seed", "9")  # no --step: the API's default, the middle kept step
    assert middle.returncode == 0 and middle.stdout.split() == [f"fork-{task_id[:8]}-mid-1.png"], middle.stderr


def test_a_terminal_gets_a_live_bar(montage, tmp_path):
    terminal, its_end = os.openpty()
    # 40 steps: the job still denoises once the command has subscribed to its events (2 steps may end before that)
    process = subprocess.Popen(command("generate", "a lighthouse of green glass at dusk", "--steps", "40", "-o", "out"),
                               cwd=tmp_path,
                               env={**ENV, "TERM": "xterm-256color", "COLUMNS": "120"}, stdout=subprocess.PIPE,
                               stderr=its_end, text=True)
    os.close(its_end)
    screen = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(terminal)
    assert process.wait(timeout=60) == 0, screen
    assert process.stdout.read().split() == ["out/a-lighthouse-of-green-glass-at-dusk-1.png"]
    text = screen.decode(errors="replace")
    assert "━" in text and re.search(r"denoising.*step \d+/\d+.*ETA", text), text  # the bar, not a line per step


def test_the_eta_after_a_wait_is_the_pace_since_the_wait_ended():
    """A storyboard waits for a family in its own stage: once its model work starts, the CLI's ETA is the pace from
    then (its wait, the server's `eta_s` while it lasted, is not counted as slow progress)."""
    import io

    from rich.console import Console

    from client.api import TaskEvent
    from cluster.media_cli import TaskProgress

    out = io.StringIO()
    shown = TaskProgress(Console(file=out, force_terminal=False, width=200))
    shown.update(TaskEvent(id="t", stage="keyframes", progress=0.05, waiting_for="flux", queue_position=2, eta_s=80))
    time.sleep(1.0)  # the wait
    shown.update(TaskEvent(id="t", stage="keyframes", progress=0.05))  # its model work starts
    time.sleep(0.2)
    shown.update(TaskEvent(id="t", stage="keyframes", progress=0.1, step=1, steps=2))
    first, _, last = out.getvalue().splitlines()
    assert first == "keyframes 5% 2 ahead ETA 80s"
    eta = int(re.fullmatch(r"keyframes 10% step 1/2 ETA (\d+)s", last).group(1))
    assert eta <= 8  # 0.2 s for 5 % of the whole: ~4 s left (counting the wait: ~22 s)


def test_edit_then_video_of_local_files(montage, tmp_path):
    (tmp_path / "street.png").write_bytes(png(64, 64, seed=1501))
    edit = cli(tmp_path, "edit", "street.png", "add snow", "--format", "webp", "--quality", "80", "--lora", "demo:0.8",
               "--steps", "40", "-o", "edits")  # still editing once the command has subscribed: its live bar shows
    assert edit.returncode == 0, edit.stderr
    assert edit.stdout.split() == ["edits/add-snow-1.webp"]
    with Image.open(tmp_path / "edits/add-snow-1.webp") as edited:
        assert (edited.format, edited.size) == ("WEBP", (64, 64))
    assert re.search(r"^editing \d+% step \d+/\d+", edit.stderr, re.M), edit.stderr

    video = cli(tmp_path, "video", "edits/add-snow-1.webp", "--model", "svd", "--frames", "6", "--gif", "-o", "clip.mp4")
    assert video.returncode == 0, video.stderr
    assert video.stdout.split() == ["clip.mp4", "clip.gif"]
    info = read_mp4((tmp_path / "clip.mp4").read_bytes())
    assert (info.num_frames, info.width, info.height) == (6, 64, 64)
    assert (tmp_path / "clip.gif").read_bytes()[:6] == GIF_HEADER
    assert re.search(r"^animating \d+% step \d+/\d+", video.stderr, re.M), video.stderr
    webm = cli(tmp_path, "video", "street.png", "--model", "svd", "--frames", "6", "-o", "clip.webm")  # by extension
    assert webm.returncode == 0 and webm.stdout.split() == ["clip.webm"], webm.stderr
    assert (tmp_path / "clip.webm").read_bytes()[:4] == WEBM_MAGIC
    into = cli(tmp_path, "video", "street.png", "--model", "svd", "--frames", "6", "--gif", "-o", "clips/")  # a folder
    assert into.returncode == 0 and into.stdout.split() == ["clips/street.mp4", "clips/street.gif"], into.stderr
    assert (tmp_path / "clips/street.gif").read_bytes()[:6] == GIF_HEADER
    clash = cli(tmp_path, "video", "street.png", "--format", "webm", "-o", "clip2.mp4")
    assert (clash.returncode, clash.stderr.strip()) == (1, "error: --format webm: -o names a .mp4 file")
    assert not (tmp_path / "clip2.mp4").exists()


def test_video_from_a_prompt_alone(montage, tmp_path):
    """No image: the server makes a keyframe from the prompt, then the clip (text to video); named after the prompt."""
    video = cli(tmp_path, "video", "--prompt", "A kite over dunes!", "--model", "wan", "--frames", "5")
    assert video.returncode == 0, video.stderr
    assert video.stdout.split() == ["a-kite-over-dunes.mp4"]
    assert read_mp4((tmp_path / "a-kite-over-dunes.mp4").read_bytes()).num_frames == 5
    assert re.search(r"^denoising .*^animating", video.stderr, re.M | re.S), video.stderr  # the keyframe, the clip
    refused = cli(tmp_path, "video", "--model", "wan")
    assert refused.returncode == 1 and "image" in refused.stderr


def test_storyboard_writes_its_video_keyframes_clips_and_exports(montage, tmp_path):
    done = cli(tmp_path, "storyboard", "a fox learns to fly", "--scenes", "1", "--scene-seconds", "1", "--fps", "4",
               "-o", "board")
    assert done.returncode == 0, done.stderr
    assert sorted(Path(path).name for path in done.stdout.split()) == [
        "clip-1.mp4", "keyframe-1.png", "storyboard.json", "storyboard.txt", "video.gif", "video.mp4"]
    board = tmp_path / "board"
    assert read_mp4((board / "video.mp4").read_bytes()).num_frames == read_mp4(
        (board / "clip-1.mp4").read_bytes()).num_frames == 5  # 1 s at 4 fps, Wan's 4k + 1
    assert decode_png((board / "keyframe-1.png").read_bytes()).size == (64, 64)
    assert (board / "video.gif").read_bytes()[:6] == GIF_HEADER
    assert len(json.loads((board / "storyboard.json").read_text())["scenes"]) == 1
    assert (board / "storyboard.txt").read_text().count("SCENE ") == 1


def test_storyboard_from_a_script_file(montage, tmp_path):
    """`--script FILE` stages a script in place of a theme (the folder named after its first words); a theme and a
    script together, or a script file that is not there, are one clear line."""
    script = "A fox watches the geese leave. It builds wings from reeds and jumps."
    (tmp_path / "script.txt").write_text(script)
    done = cli(tmp_path, "storyboard", "--script", "script.txt", "--scenes", "1", "--scene-seconds", "1", "--fps", "4")
    assert done.returncode == 0, done.stderr
    [board] = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert board.name == "a-fox-watches-the-geese-leave-it-builds"
    exported = json.loads((board / "storyboard.json").read_text())
    assert (exported["script"], exported["theme"], len(exported["scenes"])) == (script, None, 1)
    both = cli(tmp_path, "storyboard", "a fox", "--script", "script.txt")
    assert both.returncode == 1 and both.stderr.startswith("error: theme"), both.stderr
    missing = cli(tmp_path, "storyboard", "--script", "nope.txt")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: nope.txt: No such file or directory")


def test_ctrl_c_cancels_the_running_task(montage, client, tmp_path):
    (tmp_path / "still.png").write_bytes(png(64, 64, seed=1502))
    process = subprocess.Popen(command("video", "still.png", "--frames", "8", "--steps", "100"), cwd=tmp_path,
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:  # one line per stage or step when stderr is not a terminal
        seen.append(line)
        if re.match(r"animating \d+% step \d+/100", line):
            break
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)
    task_id = task_id_of("".join(seen))
    assert process.returncode == 130, errors
    assert f"task {task_id} cancelled" in errors and rest == ""  # no file written
    task = client.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "cancelled" and task["progress"] < 1 and task["result"] is None


def test_bad_input_and_no_server_are_one_clear_line(montage, tmp_path):
    too_many = cli(tmp_path, "generate", "a kite", "-n", "99")  # refused by the request schema before it is sent
    assert too_many.returncode == 1 and too_many.stderr.startswith("error: n: ")
    missing = cli(tmp_path, "edit", "0" * 32, "add snow")  # an asset id the server does not know: its 404
    assert missing.returncode == 1 and missing.stderr == f"error: image: asset {'0' * 32} not found\n"
    no_file = cli(tmp_path, "video", "nosuch.png")
    assert no_file.returncode == 1 and no_file.stderr == "error: nosuch.png: No such file or directory\n"
    (tmp_path / "still.png").write_bytes(png(64, 64, seed=1604))
    avi = cli(tmp_path, "video", "still.png", "-o", "clip.avi")  # refused before anything is sent
    assert avi.returncode == 1 and avi.stderr == "error: -o clip.avi: a video is .mp4, .webm or .gif, not .avi\n"
    (tmp_path / "still.png").unlink()
    unknown = cli(tmp_path, "generate", "a kite", "--lora", "nope")  # the server's 422 naming the adapter's field
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: loras.0.id: unknown adapter 'nope' for sdxl")
    unreachable = cli(tmp_path, "generate", "a kite", url="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach Montage at http://127.0.0.1:9" in unreachable.stderr
    assert not any("Traceback" in run.stderr for run in (too_many, missing, no_file, avi, unknown, unreachable))
    assert list(tmp_path.iterdir()) == []


def test_inpaint_with_a_mask_file_and_image_to_image_of_a_local_file(montage, tmp_path):
    source = png(64, 64, seed=1601)
    (tmp_path / "room.png").write_bytes(source)
    (tmp_path / "mask.png").write_bytes(mask_png(np.pad(np.ones((16, 16), bool), 24)))
    inpaint = cli(tmp_path, "inpaint", "room.png", "a window", "--mask", "mask.png", "--steps", "2", "--seed", "3")
    assert inpaint.returncode == 0, inpaint.stderr
    assert inpaint.stdout.split() == ["a-window-1.png"]
    out, original = (np.asarray(decode_png(data).convert("RGB"))
                     for data in ((tmp_path / "a-window-1.png").read_bytes(), source))
    np.testing.assert_array_equal(out[:24], original[:24])  # above the mask's square: the source's pixels
    (tmp_path / "black.png").write_bytes(mask_png(np.zeros((64, 64), bool)))
    refused = cli(tmp_path, "inpaint", "room.png", "a window", "--mask", "black.png")
    assert refused.returncode == 1 and refused.stderr.strip().endswith("mask: nothing to repaint: the mask has no "
                                                                        "white pixels"), refused.stderr

    moved = cli(tmp_path, "generate", "a room at night", "--image", "room.png", "--strength", "0.5", "--steps", "4")
    assert moved.returncode == 0, moved.stderr
    assert re.search(r"^denoising \d+% step \d/2 ", moved.stderr, re.M), moved.stderr  # 4 × 0.5 steps run


def test_outpaint_and_upscale_write_the_larger_images(montage, tmp_path):
    (tmp_path / "field.png").write_bytes(png(64, 64, seed=1602))
    wider = cli(tmp_path, "outpaint", "field.png", "more field", "--left", "32", "--steps", "2")
    assert wider.returncode == 0 and wider.stdout.split() == ["more-field-1.png"], wider.stderr
    larger = cli(tmp_path, "upscale", "more-field-1.png", "--scale", "2", "--steps", "2", "--strength", "0.5")
    assert larger.returncode == 0 and larger.stdout.split() == ["upscaled-1.png"], larger.stderr
    sizes = [decode_png((tmp_path / name).read_bytes()).size for name in ("more-field-1.png", "upscaled-1.png")]
    assert sizes == [(96, 64), (192, 128)]
