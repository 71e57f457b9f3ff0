"""The client is a thin HTTP client: importing it loads its schemas, pydantic and httpx, and nothing of a server
(no store, no imaging, no model, no Ray), so `pip install montage` without the `server` extra is enough for it."""
import pkgutil
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from helpers import imported_by

ROOT = Path(__file__).parents[2]
SERVER_ONLY = {"redis", "obstore", "numpy", "PIL", "torch", "ray", "safetensors", "cv2", "fastapi", "starlette",
               "yaml", "pydantic_settings"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements install (their extras' requirements counted too, an upper bound)."""
    seen: set[str] = set()
    todo = [_name(requirement) for requirement in requirements]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            try:
                todo += [_name(requirement) for requirement in metadata.requires(name) or []]
            except metadata.PackageNotFoundError:  # an extra's requirement this venv lacks: nothing can load it
                pass
    return seen


def test_importing_the_client_loads_nothing_of_the_server():
    loaded = imported_by("client")
    assert {"client", "composition", "httpx", "pydantic"} <= loaded
    assert not loaded & SERVER_ONLY


def test_the_client_needs_only_the_packages_a_plain_install_brings():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installs = _closure(declared)
    project = {"client", "composition", "config", "models", "records"}
    distributions = metadata.packages_distributions()
    third_party = {top for top in imported_by("client") - set(sys.stdlib_module_names) - project
                   if not top.startswith("_")}  # an interpreter's private modules (_sysconfigdata_…)
    needed = {_name(dist) for top in third_party for dist in distributions.get(top, [top])}
    assert needed <= installs, needed - installs


def test_every_api_schema_loads_nothing_of_a_store_an_image_or_a_model():
    import composition.schemas

    modules = sorted(info.name for info in pkgutil.iter_modules(composition.schemas.__path__))
    assert {"common", "images", "styles", "projects"} <= set(modules)
    loaded = imported_by(", ".join(f"composition.schemas.{name}" for name in modules))
    assert not loaded & (SERVER_ONLY - {"fastapi", "starlette"})  # OpenAI's multipart forms take fastapi's UploadFile


def test_the_client_refuses_a_value_of_another_json_type_as_the_server_does():
    """Checked by the API's own schemas before anything is sent: a 422 naming the field and what was sent."""
    from client.api import Montage, MontageError

    montage = Montage("http://127.0.0.1:9")  # nothing listens there: the request never leaves
    for value, sent in (("2", "a string"), (2.0, "a decimal number"), (True, "a boolean")):
        try:
            montage.generate("a fox", n=value)
        except MontageError as refused:
            assert (refused.status, refused.field, refused.message) == (
                422, "n", f"n: Input should be a valid integer, not {sent}")
        else:
            raise AssertionError(f"n={value!r} was sent")
