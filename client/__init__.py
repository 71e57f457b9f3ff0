"""A typed Python client of Montage's HTTP API (`Montage`), on which the `montage generate | edit | video |
storyboard` commands run."""
from client.api import Montage, MontageError, TaskEvent, TaskFailed, TaskHandle

__all__ = ["Montage", "MontageError", "TaskEvent", "TaskFailed", "TaskHandle"]
