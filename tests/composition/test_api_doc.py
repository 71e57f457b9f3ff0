"""docs/api.md, the HTTP contract, against the app's OpenAPI document (built in-process, no Ray): every route the
app documents has its row, and every row a route, so the two cannot drift."""
import re
from pathlib import Path

from composition.api import routes

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| `(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)` \|", re.MULTILINE)


def test_every_openapi_route_has_its_row_in_docs_api_md_and_every_row_a_route():
    served = {(method.upper(), path) for path, methods in routes().openapi()["paths"].items() for method in methods}
    documented = ROW.findall(DOC.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a route documented twice"
    assert sorted(served - set(documented)) == [], "routes missing from docs/api.md"
    assert sorted(set(documented) - served) == [], "docs/api.md documents routes the app does not serve"
