"""Server-sent events: the `event:` name and the `data:` text of each event in a stream of lines."""
from __future__ import annotations

from collections.abc import Iterable, Iterator


def parse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per event: `data:` lines joined by newlines, the name `message` unless `event:` gives one;
    comments (`:`), `id:` and `retry:` lines are skipped, and a blank line ends an event."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)
