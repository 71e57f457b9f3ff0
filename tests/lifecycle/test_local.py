"""`montage up` (the real command, in a process group of its own as `make run` in a shell) on a one-deployment app:
it starts right after a local Ray session (as the test suite's `ray.init(address="local")` makes) has ended, stops
everything it started on a signal to its process group and on a failed start, and starts nothing while another
cluster runs or a port it needs is taken. Processes are counted with psutil: those whose command line names
`serve run`, the embedded `redis-server` (port 6380) or Ray (GCS, raylet, dashboard, workers), and every descendant
of `montage up` seen while it ran.

These tests run before the session's own Ray is started (pyproject's testpaths list this file first), except the last,
which needs it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from cluster.local import REDIS_PORT
from cluster.processes import is_ray

ROOT = Path(__file__).resolve().parents[2]
APP = {"applications": [{"name": "up", "route_prefix": "/", "import_path": "tests.lifecycle.up_app:app"}]}
SESSION = ("import ray; ray.init(address='local', num_cpus=1, include_dashboard=True, log_to_driver=False); "
           "ray.shutdown()")


def started_by_up(process: psutil.Process) -> bool:
    """A process of the kinds `montage up` starts (Ray of any session: the tests hold the machine's Ray lock)."""
    try:
        cmdline, name = " ".join(process.cmdline()), process.name()
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return "bin/serve run" in cmdline or f"redis-server 127.0.0.1:{REDIS_PORT}" in cmdline or is_ray(cmdline, name)


def command(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def census() -> set[int]:
    return {process.pid for process in psutil.process_iter() if started_by_up(process)}


def alive(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.add(pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture
def up(tmp_path):
    """Starts `montage up CONFIG` in a session of its own; kills whatever it left when the test ends."""
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "REDIS_URL"}
    env.update(MONTAGE_DATA_DIR=str(tmp_path / "data"), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    started: list[subprocess.Popen] = []
    before = census()

    def start(path: Path = config) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "up", str(path)], cwd=ROOT, env=env,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    start.before, start.seen = before, set()
    yield start
    for process in started:  # its children die with it (parent-death signal)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for pid in alive(start.seen):
        psutil.Process(pid).kill()


def served() -> bool:
    try:
        return httpx.get("http://127.0.0.1:8000/", timeout=2).text == "hello"
    except httpx.HTTPError:
        return False


def descendants_until(up, process: subprocess.Popen, ready, timeout_s: float = 150.0) -> set[int]:
    """Waits until `ready(descendants' command lines)`; every descendant of `montage up` seen (kept in `up.seen`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"montage up exited with {process.returncode}:\n{process.stdout.read()[-4000:]}"
        children = psutil.Process(process.pid).children(recursive=True)
        up.seen |= {child.pid for child in children}
        if ready(" ".join(command(child.pid) for child in children)):
            return set(up.seen)
        assert time.monotonic() < deadline, "montage up did not get there in time"
        time.sleep(0.5)


def assert_all_stopped(up, process: subprocess.Popen, children: set[int]) -> None:
    """`montage up` exits 0, and no descendant of it, `serve run`, Ray or the embedded Redis outlives it."""
    code = process.wait(timeout=120)
    assert {pid: command(pid) for pid in alive(children) | (census() - up.before)} == {}
    assert code == 0


@pytest.mark.timeout(300)
def test_up_starts_after_a_local_ray_session_and_a_group_sigterm_stops_all_it_started(up):
    subprocess.run([sys.executable, "-c", SESSION], cwd=ROOT, check=True, capture_output=True, timeout=120)
    process = up()
    children = descendants_until(up, process, lambda running: served())
    kinds = " ".join(command(pid) for pid in alive(children))
    for kind in ("bin/serve run", "gcs_server", "raylet", "redis-server"):
        assert kind in kinds
    os.killpg(process.pid, signal.SIGTERM)  # what a supervisor, or Ctrl-C in a script, does to `make run`
    assert_all_stopped(up, process, children)


@pytest.mark.timeout(240)
def test_a_group_sighup_while_serve_starts_stops_all_it_started(up):
    """A closed terminal: SIGHUP to `make run`'s process group once `serve run` has started."""
    process = up()
    children = descendants_until(up, process, lambda running: "bin/serve run" in running)
    os.killpg(process.pid, signal.SIGHUP)
    assert_all_stopped(up, process, children)


@pytest.mark.timeout(120)
def test_a_taken_port_starts_nothing_and_says_which(up):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
        process = up()
        try:
            assert process.wait(timeout=60) == 1
        finally:
            output = process.stdout.read()
    assert f"port 8000 (Serve's HTTP proxy) is taken by pid {os.getpid()}" in output
    assert "started nothing" in output
    assert census() <= up.before


@pytest.mark.timeout(180)
def test_a_failed_start_stops_all_it_started(up, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications:\n  - name: up\n    import_path: 42\n    no_such_field: 1\n")  # serve run rejects it
    process = up(bad)
    assert process.wait(timeout=150) != 0
    output = process.stdout.read()
    assert "Ray head started" in output and "serve run exited" in output
    assert census() <= up.before


def test_up_refuses_while_another_cluster_runs_and_leaves_it_running(ray_serve, up):
    """The session's own Ray (tests/conftest.py) is the other cluster: it is named, and not touched."""
    import ray

    gcs = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "gcs_server"]
    process = up()
    assert process.wait(timeout=60) == 1
    output = process.stdout.read()
    assert "another Ray cluster runs on this machine" in output and "started nothing" in output
    assert all(p.is_running() for p in gcs) and ray.get(ray.put(1)) == 1
