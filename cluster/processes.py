"""The processes `montage up` runs, and the machine's Ray: children that die with their parent and are stopped group
by group; Ray's processes and the listeners of ports, found with psutil."""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence

import psutil

PR_SET_PDEATHSIG = 1
SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_[\d-]+_\d+_\d+")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux's parent-death signal)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: Sequence[str], **popen) -> subprocess.Popen:
    """A child in a session of its own, so a signal to its parent's process group reaches the parent alone, which
    stops its children in order; the kernel sends it SIGTERM if the parent (the thread that starts it) dies first."""
    return subprocess.Popen(list(args), start_new_session=True, preexec_fn=_die_with_parent, **popen)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """Sends `sig` to the child (which stops its own children), waits up to `timeout_s`, then SIGKILLs whatever is
    left of its process group."""
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.Error, OSError):
        return ""


def is_ray(cmdline: str, name: str) -> bool:
    """Ray's GCS, raylets, dashboards and their agents and subprocesses, log monitors, workers."""
    return (name in ("gcs_server", "raylet") or cmdline.startswith(("ray::", "ray-dashboard-"))
            or "site-packages/ray/" in cmdline or "ray.dashboard" in cmdline)


def ray_processes() -> list[psutil.Process]:
    """Ray's live processes on this machine (zombies, which hold nothing, left out)."""
    found = []
    for process in psutil.process_iter(["name", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and is_ray(_cmdline(process), process.info["name"] or ""):
            found.append(process)
    return found


def session_of(process: psutil.Process) -> str | None:
    match = SESSION.search(_cmdline(process))
    return match.group(0) if match else None


def live_gcs(processes: Sequence[psutil.Process]) -> psutil.Process | None:
    """The GCS of a running cluster: a GCS whose session still has a raylet (a cluster that is ending stops its
    raylets first)."""
    raylets = {session_of(p) for p in processes if p.info["name"] == "raylet"}
    return next((p for p in processes if p.info["name"] == "gcs_server" and session_of(p) in raylets), None)


def listeners(ports: Mapping[int, str]) -> dict[int, int | None]:
    """The process ids listening on any of `ports` (None where the owner cannot be read)."""
    return {c.laddr.port: c.pid for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port in ports}


def describe(pid: int | None) -> str:
    """A process as a message names it: its id and command line."""
    if pid is None:
        return "a process of another user"
    try:
        return f"pid {pid} ({_cmdline(psutil.Process(pid))[:100]})"
    except psutil.NoSuchProcess:
        return f"pid {pid} (exited)"
