"""A gang replica: one Serve replica whose family's denoiser calls run on U × R × C ranks (`models/parallel.py`).

Serve places the replica in bundle 0 of its placement group (`placement_group_bundles`, one bundle per rank); the
replica starts one rank actor in each other bundle and is itself rank 0, the one that talks to Serve: admission, the
step scheduler, previews, checkpoints, cancellation and drain stay the replica's own, and a checkpoint is the whole
state (rank 0 holds the latents). The ranks join a torch.distributed group (NCCL on CUDA, gloo on the CPU) over TCP
at rank 0's node. A rank that dies takes its gang's replica with it: rank 0's process exits, Serve replaces the replica
(a new gang) and its jobs resume elsewhere from their last checkpoints, as after any replica crash. The rank actors
are rank 0's own, so they end with it.
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from config.families import FamilyArgs
from config.specs import spec_for
from deployments.replica import memory
from models.parallel import Gang, backend, join
from models.family import Family
from models.loading import resolve_device

log = logging.getLogger(__name__)
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=10)  # every rank builds its family before the first collective


def build_model(args: FamilyArgs) -> tuple[Family, GangLeader | None]:
    """The family of `args`: in this process alone (degree 1), or as rank 0 of a gang of rank actors (then the
    leader too)."""
    layout = getattr(args, "parallel", None)
    if layout is None or layout.degree == 1:
        return spec_for(args).model_class(args), None
    leader = GangLeader(args)
    return leader.model, leader


def _rendezvous() -> str:
    """tcp://<this node>:<a free port>: where the ranks meet."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return f"tcp://{ray.util.get_node_ip_address()}:{port}"


def _join(args: FamilyArgs, address: str, rank: int) -> tuple[Family, Gang]:
    """This process as `rank` of the gang: its group, its family (built alike on every rank), its place."""
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend(device), init_method=address, rank=rank, world_size=args.parallel.degree,
                            timeout=RENDEZVOUS_TIMEOUT)
    model = spec_for(args).model_class(args)
    gang = Gang(args.parallel, model.device)
    join(model, gang)
    return model, gang


def rank_info(rank: int, model: Family) -> dict[str, Any]:
    return dict(rank=rank, node=ray.util.get_node_ip_address(), pid=os.getpid(), device=str(model.device),
                memory=memory(model.device))


@ray.remote(max_concurrency=2)  # `info` answers while `follow` runs
class Rank:
    """A follower rank: builds the family, joins the gang, then runs rank 0's denoiser calls (`follow`)."""

    def __init__(self, args: FamilyArgs, address: str, rank: int) -> None:
        self.rank = rank
        self.model, self.gang = _join(args, address, rank)

    def follow(self) -> None:
        self.gang.follow()

    def info(self) -> dict[str, Any]:
        return rank_info(self.rank, self.model)


class GangLeader:
    """Rank 0 in the replica process: starts the other ranks in the placement group's bundles 1…N-1, joins them, and
    exits the process when one of them dies (its collectives would wait for it)."""

    def __init__(self, args: FamilyArgs) -> None:
        group = ray.util.get_current_placement_group()
        if group is None:
            raise RuntimeError("parallel: a gang replica runs in a placement group (placement_group_bundles)")
        address = _rendezvous()
        bundle = dict(group.bundle_specs[0])  # every rank's bundle is alike
        options = dict(num_cpus=bundle.pop("CPU", 0), num_gpus=bundle.pop("GPU", 0), resources=bundle)
        self.ranks = [Rank.options(**options, scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=rank)).remote(args, address, rank)
            for rank in range(1, args.parallel.degree)]
        self.model, self.gang = _join(args, address, 0)
        self.following = [rank.follow.remote() for rank in self.ranks]
        threading.Thread(target=self._watch, daemon=True, name="gang-watch").start()

    def info(self) -> list[dict[str, Any]]:
        """Every rank's node, pid, device and memory (rank 0's first)."""
        return [rank_info(0, self.model), *ray.get([rank.info.remote() for rank in self.ranks], timeout=30)]

    def _watch(self) -> None:
        ready, _ = ray.wait(self.following, num_returns=1, timeout=None)
        try:
            ray.get(ready[0])
            reason = "a rank returned from its gang"
        except Exception as error:  # the rank actor died
            reason = f"a rank died: {type(error).__name__}"
        log.error("gang of %s: %s; the replica exits so Serve rebuilds it and its jobs resume from their "
                  "checkpoints", self.model.name, reason)
        os._exit(1)
