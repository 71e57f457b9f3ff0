"""How a parallel run (`pytest -n N --dist loadgroup`, as `make test` runs) spreads the suite over pytest-xdist
workers. Each worker has its own ports (tests/helpers.py), Redis and, once a test needs it, its own Ray and Serve.

- A test module is one unit of work: its module fixtures (pipelines, deployed apps) are built on one worker.
- The modules that use the session's Ray Serve (the `ray_serve` fixture, through `montage`, `client`, ...) form one
  lane, one unit in collection order (tests/reliability's killed replicas and restarted Redis last), so one worker
  starts a Ray and deploys the app. A second lane (tests/reliability on a Ray of its own) halved nothing on 2 cores:
  it doubled the CPU time of every Ray test instead.
- A module marked `xdist_group` is a unit of its own, sent right after the lane: a cluster of its own (multinode), or
  an app of its own on a Ray of its worker's own (`helpers.own_ray_serve`: one Ray for the consecutive modules that
  take it, stopped before any other test): the gang replicas, the serving and adapter-routing apps. The worker that
  runs no lane takes them and the Ray-free modules meanwhile.

tests/lifecycle needs the machine to itself (no other Ray may run beside `montage up`): a parallel run deselects it, and
`make test` runs it alone first."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

RAY = "ray-serve"


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def units_file(testrunuid: str) -> Path:
    """Where the workers leave the run's units (module → lane or group) for the scheduler: test ids carry no marks."""
    return Path(tempfile.gettempdir()) / f"montage-lanes-{testrunuid}.json"


def assign(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: deselects tests/lifecycle, moves the lane and grouped modules first (in place) and writes the
    units."""
    alone = [item for item in items if item.nodeid.startswith("tests/lifecycle/")]
    if alone:
        config.hook.pytest_deselected(items=alone)
        items[:] = [item for item in items if item not in alone]
    on_ray = {module_of(item.nodeid) for item in items if "ray_serve" in getattr(item, "fixturenames", ())}
    units: dict[str, str] = {}
    for item in items:
        module = module_of(item.nodeid)
        group = item.get_closest_marker("xdist_group")
        if group:  # its own unit, and where it uses the session's Ray Serve, its worker's own Ray
            units[module] = group.args[0]
        elif module in on_ray:
            units[module] = RAY

    def rank(item: pytest.Item) -> int:
        unit = units.get(module_of(item.nodeid))
        return 0 if unit == RAY else 1 if unit else 2

    items.sort(key=rank)  # stable: collection order within each rank
    path = units_file(os.environ["PYTEST_XDIST_TESTRUNUID"])
    partial = path.with_suffix(f".{os.environ['PYTEST_XDIST_WORKER']}")
    partial.write_text(json.dumps(units))
    partial.replace(path)  # every worker writes the same


def scheduler(config: pytest.Config, log):
    """xdist's scope scheduling over the units the workers wrote: a lane, a group, else the test's module."""
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:  # first asked once every worker has collected
                path = units_file(next(iter(self.nodes)).workerinput["testrunuid"])
                self.units = json.loads(path.read_text())
                path.unlink()
            return self.units.get(module_of(nodeid), module_of(nodeid))

    config.option.loadscopereorder = False  # the order assign() gave, not the largest unit first
    return LaneScheduling(config, log)
