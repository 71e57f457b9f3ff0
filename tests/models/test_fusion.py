"""Denoiser calls of several jobs as one forward (`models/fusion.py`), on a small module whose output shows what each
row received: batched inputs concatenate, each call keeps its own timestep, shared inputs and plain values must be
equal, and every call gets its own rows back (or the forward's error)."""
from __future__ import annotations

import pytest
import torch

from models.fusion import DenoiserCall, FusingDenoiser, run_calls


class Toy(torch.nn.Module):
    """Row i: hidden_states[i] · timestep[i] · scale + the sum of the shared ids."""

    calls = 0

    def forward(self, hidden_states, timestep, txt_ids=None, scale=1.0, return_dict=True):
        Toy.calls += 1
        if hidden_states.isnan().any():
            raise ValueError("nan input")
        shared = txt_ids.sum() if txt_ids is not None else 0.0
        return (hidden_states * timestep.reshape(-1, 1) * scale + shared,)


def _call(toy: Toy, rows: int, value: float, timestep: float, **kwargs) -> DenoiserCall:
    return DenoiserCall(toy, (torch.full((rows, 3), value), torch.tensor(timestep)), kwargs | {"return_dict": False})


def test_calls_run_as_one_forward_each_at_its_own_timestep() -> None:
    toy, ids = Toy(), torch.ones(4, 3)
    calls = [_call(toy, 2, 1.0, 5.0, txt_ids=ids), _call(toy, 1, 2.0, 7.0, txt_ids=ids.clone())]
    Toy.calls = 0
    run_calls(calls)
    assert Toy.calls == 1 and [call.joint for call in calls] == [2, 2]
    assert torch.equal(calls[0].result[0], torch.full((2, 3), 5.0 + 12.0))
    assert torch.equal(calls[1].result[0], torch.full((1, 3), 14.0 + 12.0))


def test_calls_with_other_shared_inputs_or_values_run_apart() -> None:
    toy = Toy()
    calls = [_call(toy, 1, 1.0, 5.0, txt_ids=torch.ones(4, 3)), _call(toy, 1, 1.0, 5.0, txt_ids=torch.zeros(4, 3)),
             _call(toy, 1, 1.0, 5.0, txt_ids=torch.ones(4, 3), scale=2.0)]
    Toy.calls = 0
    run_calls(calls)
    assert Toy.calls == 3 and [call.joint for call in calls] == [1, 1, 1]
    assert [call.result[0][0, 0].item() for call in calls] == [17.0, 5.0, 22.0]


def test_a_failing_forward_fails_every_call_of_it_and_no_other() -> None:
    toy = Toy()
    calls = [_call(toy, 1, float("nan"), 5.0), _call(toy, 1, 1.0, 5.0), _call(toy, 1, 1.0, 5.0, scale=3.0)]
    run_calls(calls)
    assert [type(call.error) for call in calls] == [ValueError, ValueError, type(None)]
    assert calls[2].result[0][0, 0].item() == 15.0


def test_the_fusing_denoiser_routes_calls_and_shows_the_module_otherwise() -> None:
    toy, seen = Toy(), []

    def route(call: DenoiserCall):
        seen.append(call.batch)
        run_calls([call])
        return call.result

    denoiser = FusingDenoiser(toy, route)
    (out,) = denoiser(torch.ones(2, 3), torch.tensor(3.0), return_dict=False)
    assert seen == [2] and torch.equal(out, torch.full((2, 3), 3.0))
    assert denoiser.training is toy.training and denoiser.forward == toy.forward
    with pytest.raises(AttributeError):
        denoiser.no_such_attribute
