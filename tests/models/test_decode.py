"""The decode engine (models/decode.py) on the tiny model: continuous batching gives each request the text it gets
alone, whatever joins, leaves or is cancelled beside it; grammars hold under batching; the cache shifts."""
import threading

import pytest

from config.families import LLMArgs
from models import llm
from models.types import PromptRequest, StoryboardRequest

PROMPTS = ["a cat on a roof", "a much longer prompt about a lighthouse in a storm at night", "fox", "two boats",
           "a red kite over green hills in spring", "neon street"]


@pytest.fixture(scope="module")
def model():
    return llm.LLM(LLMArgs(max_new_tokens=24, slots=4))


def alone(model, asks):
    return [model.submit(ask).result(60) for ask in asks]


def together(model, asks):
    return [answer.result(60) for answer in [model.submit(ask) for ask in asks]]


def test_batched_answers_equal_alone_greedy_and_per_seed(model):
    greedy = [model.optimize_ask(PromptRequest(prompt=p)) for p in PROMPTS]  # 6 asks over 4 rows: some wait
    sampled = [model.optimize_ask(PromptRequest(prompt=p, temperature=1.0, seed=i)) for i, p in enumerate(PROMPTS)]
    one_by_one = alone(model, greedy + sampled)
    steps = model.engine.decode.steps
    assert together(model, greedy + sampled) == one_by_one
    assert model.engine.decode.steps - steps < sum(len(a) for a in one_by_one) / 2  # rows shared the steps
    assert all(answer is not None for answer in one_by_one)
    assert len(set(one_by_one[len(PROMPTS):])) > 1  # different seeds sample different texts
    reseeded = [model.optimize_ask(PromptRequest(prompt=PROMPTS[0], temperature=1.0, seed=s)) for s in (0, 7)]
    assert alone(model, reseeded)[0] == one_by_one[len(PROMPTS)] != alone(model, reseeded)[1]


def test_a_request_joining_mid_decode_and_one_cancelled_leave_the_others_untouched(model):
    long, late, doomed = (model.storyboard_ask(StoryboardRequest(theme=t, num_scenes=2)) for t in ("a fox", "rain",
                                                                                                    "a city"))
    expected_long, expected_late = alone(model, [long, late])
    halfway, started = threading.Event(), threading.Event()
    texts_of_late: list[str] = []
    first = model.submit(long, on_text=lambda text: len(text) > 40 and halfway.set())
    cancelled = model.submit(doomed, on_text=lambda text: started.set())
    assert halfway.wait(60) and started.wait(60)
    model.engine.cancel(cancelled)
    second = model.submit(late, on_text=texts_of_late.append)
    assert not first.done()  # it joined while the first decoded
    assert first.result(60) == expected_long and second.result(60) == expected_late
    assert cancelled.cancelled()
    assert first.batch == second.batch == 2  # the most rows each decoded beside (itself included)
    assert texts_of_late[-1] == expected_late and all(expected_late.startswith(t) for t in texts_of_late)


def test_grammar_constrained_json_holds_under_batching(model):
    requests = [StoryboardRequest(theme=f"theme {i}", num_scenes=n, scene_seconds=2.0) for i, n in enumerate((1, 2, 3))]
    answers = together(model, [model.storyboard_ask(r) for r in requests])
    for request, answer in zip(requests, answers, strict=True):
        scenes = llm.parse_scenes(answer)
        assert len(scenes) == request.num_scenes and all(1 <= s.duration_s <= 3 for s in scenes)


def test_the_cache_shifts_when_its_columns_run_out(model):
    small = llm.LLM(LLMArgs(max_new_tokens=24, slots=2, context=700))
    asks = [small.optimize_ask(PromptRequest(prompt=p)) for p in PROMPTS * 2]  # ~330 columns each: t wraps
    assert together(small, asks) == alone(model, [model.optimize_ask(PromptRequest(prompt=p)) for p in PROMPTS * 2])
    assert small.engine.decode.shifts > 0


def test_a_prompt_longer_than_the_context_is_refused_naming_it():
    small = llm.LLM(LLMArgs(max_new_tokens=24, slots=1, context=256))
    with pytest.raises(ValueError, match="prompt: .* exceed the LLM context of 256 tokens"):
        small.submit(small.optimize_ask(PromptRequest(prompt="word " * 300)))


def test_waiting_requests_take_a_free_row_by_lane_then_arrival():
    single = llm.LLM(LLMArgs(max_new_tokens=24, slots=1))
    finished: list[str] = []
    busy = single.submit(single.optimize_ask(PromptRequest(prompt="first")))  # the row, while the others queue
    for name, lane in (("low", 2), ("normal-1", 1), ("high", 0), ("normal-2", 1)):
        answer = single.submit(single.optimize_ask(PromptRequest(prompt=name)), lane_rank=lane, user=name)
        answer.add_done_callback(lambda _, name=name: finished.append(name))
    busy.result(60)
    last = single.submit(single.optimize_ask(PromptRequest(prompt="last")), lane_rank=2)
    assert last.result(60) is not None and last.batch == busy.batch == 1  # one row: each decoded alone
    assert finished == ["high", "normal-1", "normal-2", "low"]
