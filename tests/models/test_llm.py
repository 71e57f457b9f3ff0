import json

import pytest
from transformers import Qwen2Config, Qwen2ForCausalLM

from config.families import LLMArgs, Source
from helpers import meta_params
from models import llm
from models.types import PromptRequest, StoryboardRequest


@pytest.fixture(scope="module")
def model():
    return llm.PromptLLM(LLMArgs(max_new_tokens=24, storyboard_max_new_tokens=48))


def test_random_weights_take_the_deterministic_fallback(model):
    requests = [PromptRequest(prompt="a cat on a roof", mode=mode, target="video")
                for mode in ("general", "artistic", "cinematic")]
    first, again = model.optimize(requests), model.optimize(requests)
    assert all(r.fallback for r in first)
    assert [r.optimized for r in first] == [r.optimized for r in again]
    assert len({r.optimized for r in first}) == 3
    assert all(r.optimized.startswith("a cat on a roof, ") and "motion" in r.optimized for r in first)


def test_batched_greedy_answers_equal_single_answers(model):
    conversations = [[{"role": "user", "content": text}] for text in ("hi", "a much longer question here")]
    assert model.chat(conversations, 12) == [model.chat([c], 12)[0] for c in conversations]


def test_clean_prompt_accepts_a_real_answer():
    answer = 'Optimized prompt: "A tabby cat on a moonlit tin roof, soft rim light"\nExplanation: ...'
    assert llm.clean_prompt(answer, "a cat on a roof") == "A tabby cat on a moonlit tin roof, soft rim light"


@pytest.mark.parametrize("answer", ["", "\x00\x01 garbage ####!!!!@@@", "A bowl of soup on a wooden table"])
def test_clean_prompt_rejects_unusable_answers(answer):
    assert llm.clean_prompt(answer, "a cat on a roof") is None


def scene(i: int) -> dict:
    return dict(description=f"scene {i} at dawn", shot_type="wide", camera_move="pan", duration_s=3,
                visual_style="watercolor")


def test_parse_scenes_accepts_valid_json_inside_prose():
    request = StoryboardRequest(theme="dawn", num_scenes=2)
    text = "Sure! " + json.dumps({"scenes": [scene(0), scene(1), scene(2)]}) + " Enjoy."
    scenes = llm.parse_scenes(text, request)
    assert [s.description for s in scenes] == ["scene 0 at dawn", "scene 1 at dawn"]


@pytest.mark.parametrize("text", [
    "no json here",
    '{"scenes": [{"description": "x y z", "shot_type": "sideways"}]}',
    json.dumps({"scenes": [scene(0)]}),  # too few scenes
])
def test_parse_scenes_rejects_invalid_answers(text):
    assert llm.parse_scenes(text, StoryboardRequest(theme="dawn", num_scenes=2)) is None


def test_storyboard_fallback_spreads_a_script_over_scenes(model):
    script = "A girl finds a key. She opens the door. A garden glows. She steps in. The door closes."
    board = model.storyboard(StoryboardRequest(script=script, num_scenes=3, style="ink", scene_seconds=2.5))
    assert board.fallback
    assert [s.description for s in board.scenes] == [
        "A girl finds a key. She opens the door.", "A garden glows. She steps in.", "The door closes."]
    assert {s.visual_style for s in board.scenes} == {"ink"} and board.scenes[0].duration_s == 2.5


def test_storyboard_fallback_from_a_theme_is_deterministic(model):
    request = StoryboardRequest(theme="a fox in winter", num_scenes=4)
    first, again = model.storyboard(request), model.storyboard(request)
    assert first.scenes == again.scenes and len(first.scenes) == 4
    assert len({s.shot_type for s in first.scenes}) == 4


def test_random_source_is_qwen25_15b():
    assert meta_params(lambda: Qwen2ForCausalLM(Qwen2Config(**llm.ARCHITECTURES[Source.RANDOM]))) == pytest.approx(
        1.54, rel=0.01)
