"""Built-in catalogue: cities with landmarks, writing styles, moods and project templates, loaded from
``data/*.json``."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.types import ControlType

DATA_DIR = Path(__file__).parent / "data"

Key = Annotated[str, Field(pattern=r"^[a-z0-9]+(?:_[a-z0-9]+)*$")]
Text = Annotated[str, Field(min_length=1)]


class Landmark(BaseModel):
    """A landmark of a city and the prompt fragment that depicts it (no person in it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: Text
    prompt: Text


class City(BaseModel):
    """A city with at least three landmarks whose keys are unique within it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: Text
    country: Text
    landmarks: tuple[Landmark, ...] = Field(min_length=3)

    @field_validator("landmarks")
    @classmethod
    def _unique_landmarks(cls, landmarks: tuple[Landmark, ...]) -> tuple[Landmark, ...]:
        keys = [landmark.key for landmark in landmarks]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"duplicate landmark keys: {', '.join(duplicates)}")
        return landmarks

    def landmark(self, key: str) -> Landmark:
        """The landmark with this key; KeyError when there is none."""
        for landmark in self.landmarks:
            if landmark.key == key:
                return landmark
        raise KeyError(key)


class WritingStyle(BaseModel):
    """A style for the writing workflow: prompt template with ``{word}`` and ControlNet weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: Text
    prompt: Text
    negative_prompt: str = ""
    controls: dict[ControlType, Annotated[float, Field(ge=0.0, le=2.0)]] = Field(min_length=1)

    @field_validator("prompt")
    @classmethod
    def _has_word(cls, prompt: str) -> str:
        if "{word}" not in prompt:
            raise ValueError("prompt must contain {word}")
        try:
            prompt.format(word="", translation="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"prompt may only use {{word}} and {{translation}}: {exc}") from exc
        return prompt

    def render(self, word: str, translation: str = "") -> str:
        """The prompt with ``word`` (and ``translation``, falling back to ``word``) filled in."""
        return self.prompt.format(word=word, translation=translation or word)


class ProjectTemplate(BaseModel):
    """A starting point for a project: defaults for the requests made in it, per task kind (`image`, `video`,
    `storyboard`, ...); a request's own fields always win."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: Text
    description: Text
    defaults: dict[Key, dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class Catalogue:
    """All built-in catalogue data, keyed by ``key``."""

    cities: dict[str, City]
    writing_styles: dict[str, WritingStyle]
    moods: dict[str, str]
    project_templates: dict[str, ProjectTemplate]


def _read(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def _by_key(items: list[Any], what: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items:
        if item.key in result:
            raise ValueError(f"duplicate {what} key: {item.key}")
        result[item.key] = item
    return result


@functools.cache
def load_catalogue() -> Catalogue:
    """Load and validate the JSON files in ``composition/data`` (once per process)."""
    cities = _by_key([City.model_validate(city) for city in _read("cities.json")["cities"]], "city")
    styles = _by_key(
        [WritingStyle.model_validate(style) for style in _read("writing_styles.json")["styles"]], "writing style"
    )
    moods = _read("moods.json")["moods"]
    if not isinstance(moods, dict) or not all(
        isinstance(key, str) and isinstance(value, str) and value for key, value in moods.items()
    ):
        raise ValueError("moods.json: 'moods' must map names to non-empty prompt fragments")
    templates = _by_key([ProjectTemplate.model_validate(template)
                         for template in _read("project_templates.json")["templates"]], "project template")
    return Catalogue(cities=cities, writing_styles=styles, moods=dict(moods), project_templates=templates)
