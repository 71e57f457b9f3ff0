"""CUDA graph buckets (models/graphs.py) on the CPU: the bucket choice, the padding and its slicing back, exact
through the real tiny UNet, ControlNet and SVD UNet in the same wrapper code path as on CUDA (capture off), solo,
batched and fused; LoRA slots swap in place under it (no parameter moves, so a captured graph stays valid)."""
import threading
from functools import partial

import numpy as np
import pytest
import torch

from config.families import AdapterPolicy, SDXLArgs, StepPolicy, SVDArgs
from deployments.scheduler import StepScheduler
from helpers import png
from models.graphs import bucket_for, pad_rows, slice_rows
from models.steps import Steps
from models.types import Control, ImageRequest, Lora, VideoRequest

SIZE = dict(width=64, height=64, steps=2, guidance=5.0)


def test_buckets_default_to_powers_of_two_up_to_twice_the_step_batch_and_a_call_takes_the_next_one():
    assert SDXLArgs().buckets() == [1, 2, 4, 8, 16]  # step_batch 8, guidance doubles each request
    assert SVDArgs().buckets() == [1, 2, 4]  # video: step_batch 2
    assert SDXLArgs(steps=StepPolicy(step_batch=3)).buckets() == [1, 2, 4, 6]
    assert SDXLArgs(graph_buckets=[8, 2, 2]).buckets() == [2, 8]
    assert [bucket_for(rows, [2, 8]) for rows in (1, 2, 3, 8, 9)] == [2, 2, 8, 8, None]
    with pytest.raises(ValueError, match="graph_buckets"):
        SDXLArgs(graph_buckets=[0])
    with pytest.raises(ValueError, match="cuda_graphs"):
        SDXLArgs.model_validate(dict(cuda_graphs="sometimes"))


def test_padding_repeats_the_last_row_of_batched_tensors_only_and_slicing_undoes_it():
    tree = dict(sample=torch.arange(6.0).reshape(3, 2), step=torch.tensor(5.0), ids=torch.ones(7, 3),
                residuals=[torch.zeros(3, 4), torch.ones(3)], flag=True)
    padded = pad_rows(tree, 3, 5)
    assert padded["sample"].tolist() == [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]
    assert [r.shape[0] for r in padded["residuals"]] == [5, 5] and padded["ids"].shape == (7, 3)
    assert padded["step"] is tree["step"] and padded["flag"] is True
    back = slice_rows(padded, 5, 3)
    assert torch.equal(back["sample"], tree["sample"]) and [r.shape[0] for r in back["residuals"]] == [3, 3]
    assert pad_rows(tree, 3, 3) is tree


def _sdxl(**args):
    from models.sdxl import SDXL

    return SDXL(SDXLArgs(**args))


@pytest.fixture(scope="module")
def sdxl_pair():
    """The tiny SDXL with graph buckets 4 and 8 (so 1 and 3 requests pad), and without."""
    return _sdxl(cuda_graphs=True, graph_buckets=[4, 8]), _sdxl()


def test_padded_calls_of_the_unet_and_controlnet_equal_their_unpadded_runs(sdxl_pair):
    graphed, eager = sdxl_pair
    unet, controlnet = graphed.union.unet.graphed, graphed.union.controlnet.graphed
    plain = [ImageRequest(prompt=p, seed=s, **SIZE) for p, s in (("a red fox", 1), ("a castle", 2), ("a boat", 3))]
    control = [r.model_copy(update={"controls": (Control(type="canny", image=png()),)}) for r in plain]
    for batch in (plain[:1], plain, control[:1], control):  # 2 rows → bucket 4, 6 rows → bucket 8
        before = unet.padded
        np.testing.assert_allclose(graphed.run(batch), eager.run(batch), atol=1e-5, rtol=0)
        assert unet.padded == before + SIZE["steps"]
    assert controlnet.padded == 2 * SIZE["steps"] and unet.eager == 0 and unet.captures == 0  # no capture off CUDA
    # a batch padded to its bucket equals its requests' solo runs
    solo = np.concatenate([eager.run([r]) for r in plain])
    np.testing.assert_allclose(graphed.run(plain), solo, atol=1e-4, rtol=0)


def test_a_call_beyond_the_largest_bucket_runs_as_it_is():
    graphed = _sdxl(cuda_graphs=True, graph_buckets=[2])
    requests = [ImageRequest(prompt="a red fox", seed=s, **SIZE) for s in (1, 2)]
    np.testing.assert_allclose(graphed.run(requests), _sdxl().run(requests), atol=1e-5, rtol=0)
    assert graphed.union.unet.graphed.eager == SIZE["steps"]


def test_fused_jobs_pad_to_their_bucket_and_each_ends_as_its_solo_run(sdxl_pair):
    """Two jobs under the step scheduler, their denoiser calls of each step one forward of 4 rows (bucket 4, the
    timestep per sample), give their solo images."""
    graphed, eager = sdxl_pair
    requests = [ImageRequest(prompt=p, seed=s, **SIZE) for p, s in (("a kite", 5), ("a lighthouse", 6))]
    scheduler = StepScheduler(batch_budget=8)
    tickets = [scheduler.ticket("normal", f"user-{i}", graphed.fuse_key(r)) for i, r in enumerate(requests)]
    outputs: list = [None, None]
    barrier = threading.Barrier(2)

    def job(index: int) -> None:
        barrier.wait()
        with scheduler.running(tickets[index]):
            steps = Steps(on_step=lambda _b: scheduler.boundary(tickets[index]),
                          denoise=partial(scheduler.fused, tickets[index]))
            outputs[index] = graphed.run([requests[index]], steps)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(t.fused_requests for t in tickets) == 2
    for output, request in zip(outputs, requests):
        np.testing.assert_allclose(output, eager.run([request]), atol=1e-4, rtol=0)


def test_adapters_swap_into_slots_in_place_under_the_graphed_forward(tmp_path):
    """With graphs the bank is the compiled one's: an adapter and its scale are written into fixed slots, so no
    parameter or buffer of the UNet moves (a captured graph reads them where they are) and the forward stays the
    same graphed one."""
    from models.adapter_files import DEMO_ID
    from models.adapters import SlotBank

    model = _sdxl(cuda_graphs=True, adapters=AdapterPolicy(folder=tmp_path, max_rank=8))
    unet = model.union.unet
    assert isinstance(model.adapters, SlotBank)
    forward = unet.forward

    def addresses():
        return {name: t.data_ptr() for name, t in [*unet.named_parameters(), *unet.named_buffers()]}

    before = addresses()
    request = ImageRequest(prompt="a red fox", seed=1, **SIZE)
    plain = model.run([request])
    adapted = model.run([request.model_copy(update={"loras": (Lora(id=DEMO_ID, scale=1.0),)})])
    half = model.run([request.model_copy(update={"loras": (Lora(id=DEMO_ID, scale=0.5),)})])
    assert np.abs(adapted - plain).max() > 1e-3 and np.abs(half - adapted).max() > 1e-4
    np.testing.assert_allclose(model.run([request]), plain, atol=1e-6, rtol=0)
    assert addresses() == before and unet.forward is forward


def test_svd_graph_buckets_pad_its_unet_calls_and_keep_the_frames():
    from models.svd import SVD

    request = VideoRequest(image=png(), prompt="", width=64, height=64, num_frames=8, fps=7, steps=2, guidance=3.0,
                           seed=4)
    model = SVD(SVDArgs(cuda_graphs=True, graph_buckets=[4]))
    forward = model.pipe.unet.graphed
    padded = model.run([request])  # guidance: 2 rows, padded to 4
    assert forward.padded == 2
    forward.buckets = [2]
    np.testing.assert_allclose(padded, model.run([request]), atol=1e-4, rtol=0)
    assert forward.padded == 2


def test_a_replica_with_graphs_warms_up_every_operation_while_it_starts(sdxl_pair):
    """cuda_graphs alone (no compile) warms up as compile does: plain and ControlNet calls at batch 1 and 2."""
    graphed, eager = sdxl_pair
    calls = []
    for model in sdxl_pair:
        hook = model.union.unet.register_forward_hook(lambda *_: calls.append(1))
        model.warmup()
        hook.remove()
    assert len(calls) == 2 * 2 * 2  # the graphed one: two operations, two batch sizes, two steps; the other none
