"""The contracts every model family keeps (as diffusers' `PipelineTesterMixin`): a family's test module subclasses
`FamilyContract` as `TestContract`, with its `model` fixture and request builder, and runs the whole battery."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import meta_params

from config.families import Source
from models.steps import Steps


class FamilyContract:
    """Batched outputs equal single calls, seeds change the output, progress comes once per step, a bad size fails
    before any compute, mixed groups are refused, and the random source builds the full-size architecture."""

    pipelines: ClassVar[tuple[type, ...]]  # the diffusers pipelines the family calls (none may run on bad input)
    architectures: ClassVar[dict]  # the family module's ARCHITECTURES
    full_size: ClassVar[dict[str, tuple[type, float]]]  # architecture part → (its class, billions of parameters)
    shape: ClassVar[tuple[int, ...]]  # one request's output: (H, W, 3), or (frames, H, W, 3)
    mixed: ClassVar[dict[str, Any]]  # a change that puts a request in another pipeline call
    bad_fields: ClassVar[dict[str, int]] = {"width": 72, "height": 72}  # off the latent grid (16)
    batch_size: ClassVar[int] = 2
    operation: ClassVar[str] = "generate"  # the batch operation: generate, or animate

    @staticmethod
    def request(seed: int, **change):
        raise NotImplementedError

    def batch(self) -> list:
        return [self.request(seed) for seed in range(self.batch_size)]

    def serve(self, model, requests: list) -> list:
        """The family's batch operation, which splits mixed batches."""
        return getattr(model, self.operation)(requests)

    @pytest.fixture
    def no_compute(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args, **kwargs):
            raise AssertionError("pipeline called")

        for pipeline in self.pipelines:
            monkeypatch.setattr(pipeline, "__call__", fail)

    def test_batch_equals_single_calls(self, model) -> None:
        requests = self.batch()
        batched = model.run(requests)
        assert batched.shape == (len(requests), *self.shape)
        assert batched.min() >= 0.0 and batched.max() <= 1.0
        singles = np.concatenate([model.run([r]) for r in requests])
        assert np.abs(batched - singles).max() <= 1e-4

    def test_seeds_change_the_output(self, model) -> None:
        outputs = model.run([self.request(1), self.request(2)])
        assert np.abs(outputs[0] - outputs[1]).mean() > 1e-3

    def test_progress_is_reported_per_step(self, model) -> None:
        seen: list[tuple[int, int]] = []
        model.run([self.request(0, steps=3)], Steps(on_step=lambda b: seen.append((b.done, b.total))))
        assert seen == [(1, 3), (2, 3), (3, 3)]

    def test_bad_size_fails_before_compute(self, model, no_compute: None) -> None:
        assert model.size_multiple == 16
        for field, value in self.bad_fields.items():
            bad = self.request(1, **{field: value})
            with pytest.raises(ValueError, match=field):
                self.serve(model, [self.request(2), bad])

    def test_run_refuses_a_mixed_group(self, model, no_compute: None) -> None:
        with pytest.raises(ValueError, match="requests"):
            model.run([self.request(1), self.request(2, **self.mixed)])

    def test_random_source_builds_full_size_architectures(self) -> None:
        for part, (cls, billions) in self.full_size.items():
            architecture = self.architectures[Source.RANDOM][part]
            assert meta_params(lambda: cls(**architecture)) == pytest.approx(billions, rel=0.01), part
