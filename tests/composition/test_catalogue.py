"""The built-in catalogue JSON loads, validates and holds enough usable entries."""
import re

import pytest
from pydantic import ValidationError

from composition.catalogue import City, WritingStyle, load_catalogue

SNAKE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
CONTROL_TYPES = {"canny", "depth", "segmentation", "scribble"}


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def test_load_is_cached(catalogue):
    assert load_catalogue() is catalogue


def test_cities_and_landmarks(catalogue):
    assert len(catalogue.cities) >= 20
    assert len({city.country for city in catalogue.cities.values()}) >= 15
    for key, city in catalogue.cities.items():
        assert key == city.key and SNAKE.match(key), key
        assert len(city.landmarks) >= 3, key
        landmark_keys = [landmark.key for landmark in city.landmarks]
        assert len(landmark_keys) == len(set(landmark_keys)), key
        for landmark in city.landmarks:
            assert SNAKE.match(landmark.key) and landmark.key.isascii(), landmark.key
            assert landmark.name and landmark.prompt


def test_writing_styles(catalogue):
    styles = catalogue.writing_styles
    assert len(styles) >= 4
    assert {"comic", "watercolor"} <= styles.keys()
    for key, style in styles.items():
        assert key == style.key and SNAKE.match(key)
        assert style.controls and set(style.controls) <= CONTROL_TYPES, key
        assert all(0.0 <= weight <= 2.0 for weight in style.controls.values()), key
        prompt = style.prompt.format(word="雨", translation="rain")
        assert "雨" in prompt and "{" not in prompt
    assert styles["comic"].controls != styles["watercolor"].controls


def test_moods(catalogue):
    assert len(catalogue.moods) >= 8
    assert {"happy", "calm", "romantic", "mysterious"} <= catalogue.moods.keys()
    assert all(isinstance(text, str) and text for text in catalogue.moods.values())


def test_models_reject_bad_data():
    landmark = {"key": "a", "name": "A", "prompt": "a"}
    with pytest.raises(ValidationError):
        City(key="x", name="X", country="Y", landmarks=[landmark, landmark, {**landmark, "key": "b"}])
    with pytest.raises(ValidationError):
        City(key="x", name="X", country="Y", landmarks=[landmark])
    with pytest.raises(ValidationError):
        WritingStyle(key="s", name="S", prompt="no placeholder", controls={"canny": 1.0})
    with pytest.raises(ValidationError):
        WritingStyle(key="s", name="S", prompt="{word}", controls={"canny": 2.5})
    with pytest.raises(ValidationError):
        WritingStyle(key="s", name="S", prompt="{word}", controls={"openpose": 1.0})


def test_project_templates_name_real_fields_of_their_task_kinds(catalogue):
    """Each default is a field of a request body of that task kind, and a minimal body with it validates."""
    from composition.schemas.images import ControlledGeneration, ImageEdit, ImageGeneration
    from composition.schemas.prompts import PromptOptimize
    from composition.schemas.storyboards import StoryboardBody
    from composition.schemas.variants import SoulVideoBody
    from composition.schemas.videos import VideoGeneration
    from composition.schemas.writing import WritingBody

    asset = "0" * 32
    minimal = {"image": [(ImageGeneration, {"prompt": "x"}), (ImageEdit, {"prompt": "x", "image": asset}),
                         (ControlledGeneration, {"prompt": "x", "controls": [{"type": "canny", "image": asset}]})],
               "video": [(VideoGeneration, {"image": asset})], "soul_video": [(SoulVideoBody, {})],
               "storyboard": [(StoryboardBody, {"theme": "x"})], "prompt": [(PromptOptimize, {"prompt": "x"})],
               "writing": [(WritingBody, {"word": "x"})]}
    assert len(catalogue.project_templates) >= 3
    for template in catalogue.project_templates.values():
        for kind, defaults in template.defaults.items():
            bodies = minimal[kind]
            for name in defaults:
                assert any(name in body.model_fields for body, _ in bodies), (template.key, kind, name)
            for body, required in bodies:
                body.model_validate(required | {k: v for k, v in defaults.items() if k in body.model_fields})
