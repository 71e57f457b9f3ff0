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
