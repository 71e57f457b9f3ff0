"""A family's denoiser over a gloo gang of 2 and 4 processes equals the single-process run, and a job's step state
moves between a gang and a single process either way."""
from __future__ import annotations

import functools

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import helpers
from config.families import FluxArgs, WanArgs
from config.parallel import ParallelLayout
from models.errors import InvalidRequest
from models.flux import Flux
from models.parallel import Gang, check_sequence, join
from models.steps import StepState, Steps
from models.types import EditRequest, ImageRequest, VideoRequest
from models.wan import Wan

STEPS = 2
TOLERANCE = 1e-4


def video(**overrides) -> VideoRequest:
    return VideoRequest(**{**dict(image=helpers.png(40, 48, 1), prompt="a cat", width=64, height=64, steps=STEPS,
                                  guidance=5.0, seed=3, num_frames=5, fps=16), **overrides})


def image() -> ImageRequest:
    return ImageRequest(prompt="a red fox", width=64, height=64, steps=STEPS, guidance=3.5, seed=5)


def edit() -> EditRequest:
    return EditRequest(prompt="make it blue", image=helpers.png(64, 64, 2), width=64, height=64, steps=STEPS,
                       guidance=3.5, seed=6)


def family(name: str):
    return Wan(WanArgs(device="cpu")) if name == "wan" else Flux(FluxArgs(device="cpu", max_sequence_length=64))


def operations(name: str, model) -> dict:
    """Each operation's run over its test request: float outputs."""
    if name == "wan":
        return {"animate": lambda steps=None: model.run([video()], steps)}
    return {"generate": lambda steps=None: model.run([image()], steps),
            "edit": lambda steps=None: model.run_edit([edit()], steps)}


def saved_at(step: int, states: list[bytes]) -> Steps:
    return Steps(on_step=lambda b: states.extend(s.to_bytes() for s in b.states()) if b.done == step else None)


def rank_main(rank: int, world: int, store: str, name: str, layout: dict, out: str, resume: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = family(name)
    gang = Gang(ParallelLayout(**layout), torch.device("cpu"))
    join(model, gang)
    if rank == 0:
        for operation, run in operations(name, model).items():
            np.save(Path(out, f"{operation}.npy"), run())
            states: list[bytes] = []
            run(saved_at(1, states))
            Path(out, f"{operation}.state").write_bytes(states[0])
            np.save(Path(out, f"{operation}.resumed.npy"),
                    run(Steps(resume=[StepState.from_bytes(resume[operation])])))
        gang.stop()
    else:
        gang.follow()
    dist.destroy_process_group()


@functools.cache
def single_run(name: str):
    """The single-process outputs of each operation, and its step-1 state (made once per family)."""
    model = family(name)
    outputs, states = {}, {}
    for operation, run in operations(name, model).items():
        outputs[operation] = run()
        saved: list[bytes] = []
        run(saved_at(1, saved))
        states[operation] = saved[0]
    return name, model, outputs, states


# {}: a gang of 1, the degenerate layout a one-GPU machine runs, through the same code.
LAYOUTS = {"wan": [dict(ulysses=2), dict(cfg=2), dict(ulysses=2, cfg=2), {}], "flux": [dict(ulysses=2), {}]}


@pytest.mark.parametrize(("name", "layout"), [(name, layout) for name, layouts in LAYOUTS.items() for layout in layouts],
                         ids=lambda value: value if isinstance(value, str) else "x".join(
                             f"{k[0]}{v}" for k, v in value.items()) or "one")
def test_every_layout_equals_the_single_process_run_and_states_move_both_ways(name, layout, tmp_path):
    _, model, outputs, states = single_run(name)
    world = ParallelLayout(**layout).degree
    # forked ranks start with torch and diffusers imported (spawned ones re-import them: 55 s → 9 s for the module)
    mp.start_processes(rank_main, args=(world, str(tmp_path / "store"), name, layout, str(tmp_path), states),
                       nprocs=world, start_method="fork")
    for operation, run in operations(name, model).items():
        whole = outputs[operation]
        assert np.abs(np.load(tmp_path / f"{operation}.npy") - whole).max() <= TOLERANCE, (operation, layout)
        # a single process's step-1 state resumed on the gang, and the gang's on a single process
        assert np.abs(np.load(tmp_path / f"{operation}.resumed.npy") - whole).max() <= TOLERANCE, operation
        gang_state = StepState.from_bytes((tmp_path / f"{operation}.state").read_bytes())
        assert np.abs(run(Steps(resume=[gang_state])) - whole).max() <= TOLERANCE, operation


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_sequence_the_context_ranks_cannot_split_is_refused_naming_width(name):
    _, model, _, _ = single_run(name)
    four = ParallelLayout(ulysses=2, ring=2)

    def sized(side: int):
        return video(width=side, height=side) if name == "wan" else image().model_copy(update=dict(width=side,
                                                                                                   height=side))

    check_sequence(four, model, sized(64))  # 4 × 4 tokens a frame
    with pytest.raises(InvalidRequest) as error:
        check_sequence(four, model, sized(48))  # 3 × 3 (Wan: × 2 latent frames)
    assert error.value.field == "width"
