"""How a parallel run (`pytest -n N --dist loadgroup`, as `make test` runs) spreads the suite over pytest-xdist
workers. Each worker has its own ports (tests/helpers.py), Redis and, once a test needs it, its own Ray and Serve.

- A test module is one unit of work: its module fixtures (pipelines, deployed apps) are built on one worker.
- The modules that use the session's Ray Serve (the `ray_serve` fixture, through `montage`, `client`, ...) join one of
  two lanes, each one unit, so that two workers start a Ray and deploy the app, not all of them: tests/reliability
  (killed replicas, a restarted Redis, redeploys of the session app) and the rest, in collection order (tests/deployments'
  declarative deploys, which replace the app, come before the session's app is deployed).
- Lanes and modules marked `xdist_group` (a cluster of their own) are sent first, the longest lane first; the workers
  that run no lane take the Ray-free modules meanwhile.

tests/lifecycle needs the machine to itself (no other Ray may run beside `montage up`): a parallel run deselects it, and
`make test` runs it alone first."""
from __future__ import annotations

import pytest

RELIABILITY = "ray-reliability"
SERVE = "ray-serve"
LANES = (RELIABILITY, SERVE)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def assign(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects tests/lifecycle, marks the session-Ray modules with their lane and moves lanes and grouped modules
    first (in place)."""
    alone = [item for item in items if item.nodeid.startswith("tests/lifecycle/")]
    if alone:
        config.hook.pytest_deselected(items=alone)
        items[:] = [item for item in items if item not in alone]
    on_ray = {module_of(item.nodeid) for item in items if "ray_serve" in getattr(item, "fixturenames", ())}
    for item in items:
        module = module_of(item.nodeid)
        if module in on_ray:
            item.add_marker(pytest.mark.xdist_group(RELIABILITY if module.startswith("tests/reliability/") else SERVE))

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        return LANES.index(group.args[0]) if group and group.args[0] in LANES else 2 if group else 3

    items.sort(key=rank)  # stable: collection order within each rank


def scheduler(config: pytest.Config, log):
    """xdist's loadgroup scheduling, but a test outside any group goes with its module (as `--dist loadfile`)."""
    from xdist.scheduler import LoadGroupScheduling

    class LaneScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return module_of(scope) if scope == nodeid else scope

    config.option.loadscopereorder = False  # the order assign() gave, not the largest unit first
    return LaneScheduling(config, log)
