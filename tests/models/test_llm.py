import json
import re

import pytest
from transformers import Qwen2Config, Qwen2ForCausalLM

from config.families import LLMArgs, Source
from helpers import meta_params
from models import llm
from models.types import PromptRequest, StoryboardRequest


@pytest.fixture(scope="module")
def model():
    return llm.LLM(LLMArgs(max_new_tokens=24))


@pytest.fixture(scope="module")
def hurried():
    """A model whose time limit ends every generation after its first token."""
    return llm.LLM(LLMArgs(max_new_tokens=24, timeout_s=1e-6))


def test_random_weights_answer_under_the_grammar_not_the_template(model):
    requests = [PromptRequest(prompt="a cat on a roof.", mode=mode, target="video")
                for mode in ("general", "artistic", "cinematic")]
    first, again = model.optimize(requests), model.optimize(requests)
    assert not any(r.fallback for r in first)
    assert [r.optimized for r in first] == [r.optimized for r in again]
    for result in first:
        assert result.optimized.startswith("a cat on a roof, ")
        enrichment = result.optimized.removeprefix("a cat on a roof, ")
        assert 8 <= len(enrichment) <= 24 and re.fullmatch(f"{llm.PROMPT_CHARS}+", enrichment), enrichment
        assert "motion" not in result.optimized  # the model's words, not the template's


@pytest.mark.parametrize("num_scenes", [1, 3, 6])
def test_storyboard_from_random_weights_is_exactly_the_asked_scenes(model, num_scenes):
    request = StoryboardRequest(theme="a fox learns to fly", num_scenes=num_scenes, scene_seconds=3)
    board = model.storyboard(request)
    assert board.fallback is False and len(board.scenes) == num_scenes
    for scene in board.scenes:
        assert 3 <= len(scene.description) <= llm.DESCRIPTION_CHARS and 2 <= len(scene.visual_style) <= llm.STYLE_CHARS
        assert re.fullmatch(f"{llm.PROMPT_CHARS}+", scene.description + scene.visual_style)
        assert scene.duration_s in (2, 3, 4)  # whole seconds, 0.5× to 1.5× the asked 3 s
    assert model.storyboard(request).scenes == board.scenes


@pytest.mark.parametrize("scene_seconds, bounds", [(0.4, (1, 1)), (1, (1, 1)), (2, (1, 3)), (3, (2, 4)), (4, (2, 6)),
                                                   (30, (15, 30))])
def test_storyboard_durations_are_the_whole_seconds_from_half_to_one_and_a_half_times_the_asked(scene_seconds,
                                                                                                 bounds):
    duration = llm.storyboard_schema(2, scene_seconds)["properties"]["scenes"]["items"]["properties"]["duration_s"]
    assert (duration["minimum"], duration["maximum"]) == bounds


def test_parse_scenes_reads_the_grammars_json():
    scenes = [dict(description=f"scene {i} at dawn", shot_type="wide", camera_move="pan", duration_s=3,
                   visual_style="watercolor") for i in range(2)]
    parsed = llm.parse_scenes(json.dumps({"scenes": scenes}))
    assert [s.description for s in parsed] == ["scene 0 at dawn", "scene 1 at dawn"]


def test_a_timeout_takes_the_template_and_says_so(hurried):
    (prompt,) = hurried.optimize([PromptRequest(prompt="a cat on a roof", target="video")])
    assert prompt.fallback and prompt.optimized.startswith("a cat on a roof, ") and "motion" in prompt.optimized
    script = "A girl finds a key. She opens the door. A garden glows. She steps in. The door closes."
    board = hurried.storyboard(StoryboardRequest(script=script, num_scenes=3, style="ink", scene_seconds=2.5))
    assert board.fallback
    assert [s.description for s in board.scenes] == [
        "A girl finds a key. She opens the door.", "A garden glows. She steps in.", "The door closes."]
    assert {s.visual_style for s in board.scenes} == {"ink"} and board.scenes[0].duration_s == 2.5
    themed = hurried.storyboard(StoryboardRequest(theme="a fox in winter", num_scenes=4))
    assert themed.fallback and len({s.shot_type for s in themed.scenes}) == 4


def test_random_source_is_qwen25_15b():
    assert meta_params(lambda: Qwen2ForCausalLM(Qwen2Config(**llm.ARCHITECTURES[Source.RANDOM]))) == pytest.approx(
        1.54, rel=0.01)
