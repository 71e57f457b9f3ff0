"""Where a replica runs: its name, whether Serve is stopping it, the memory it holds. No model, no torch at import, so
the task runner and the ingress use it too."""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

from ray import serve
from ray.serve._private.constants import SERVE_LOGGER_NAME

from records.tasks import Cancelled


def memory(device: Any) -> dict[str, int]:
    """Bytes in use: the CUDA allocator's and the device's (CUDA), else this process's resident set."""
    if device.type == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return dict(allocated=torch.cuda.memory_allocated(device), reserved=torch.cuda.memory_reserved(device),
                    device_used=total - free, device_total=total)
    import psutil

    return dict(resident=psutil.Process().memory_info().rss)


def serve_is_stopping() -> bool:
    """Whether Serve has begun this replica's graceful shutdown (downscale, redeploy, replacement). Serve offers no
    public signal; this reads the replica actor's own flag, and is False wherever that cannot be found."""
    try:
        import ray

        worker = ray._private.worker.global_worker
        replica = worker.actors.get(worker.actor_id)
        return bool(getattr(getattr(replica, "_replica_impl", None), "_shutting_down", False))
    except Exception:  # outside Ray, or its internals moved: no drain signal, checkpoints still bound the loss
        return False


def replica_name() -> str:
    """The Serve replica id inside Ray, host:pid outside it."""
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not running inside a Serve replica
        return f"{socket.gethostname()}:{os.getpid()}"


class CancellationsAreNoFailures(logging.Filter):
    """Serve logs whatever a request raises as "Request failed." at ERROR with its traceback: a request whose tasks
    were cancelled (`Cancelled`, at a step boundary or before its batch ran) is logged as one INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Cancelled):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = f"Request cancelled: {error}", (), None, None
        return True


def log_cancellations_as_info() -> None:
    """Installs `CancellationsAreNoFailures` on this process's Serve logger, once."""
    logger = logging.getLogger(SERVE_LOGGER_NAME)
    if not any(isinstance(found, CancellationsAreNoFailures) for found in logger.filters):
        logger.addFilter(CancellationsAreNoFailures())
