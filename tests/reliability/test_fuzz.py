"""Schemathesis fuzzes the whole API from the live `/openapi.json`: positive and negative cases for every
operation; no answer may be a server error or break the documented schema (status codes, content types, bodies)."""
import os

import httpx
import schemathesis
from helpers import BASE
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))  # per operation and mode; `make soak` raises it
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def waits(spec: dict) -> set[str]:
    """Labels of the operations whose JSON body has a `wait_s` field."""
    schemas = spec["components"]["schemas"]
    labels = set()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "wait_s" in schemas.get(body.get("$ref", "").rsplit("/", 1)[-1], {}).get("properties", {}):
                labels.add(f"{method.upper()} {path}")
    return labels


def fuzz(operation, mode: GenerationMode, tried: list[str], waiting: bool) -> None:
    """Up to EXAMPLES cases of one operation; generation requests answer at once (wait_s 0, also when the case
    leaves it to its default) and their tasks are cancelled rather than awaited."""
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.explicit, Phase.generate])  # failures are reported as found, not shrunk
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if waiting and isinstance(case.body, dict):
            case.body["wait_s"] = 0
        if isinstance(case.query, dict) and "wait_s" in case.query:
            case.query["wait_s"] = 0
        tried.append(operation.label)
        response = case.call_and_validate(base_url=BASE, checks=CHECKS, timeout=60)
        if response.status_code == 202:  # a queued generation: not what the fuzz is about, free the runners
            httpx.delete(f"{BASE}/v1/tasks/{response.json()['task_id']}", timeout=30)

    run()


def test_no_server_error_and_no_schema_violation(montage):
    schema = schemathesis.openapi.from_url(f"{BASE}/openapi.json")
    waiting = waits(httpx.get(f"{BASE}/openapi.json", timeout=30).json())
    tried, failures = [], {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, tried, operation.label in waiting)
            except Unsatisfiable:  # no invalid input exists for an operation without parameters
                continue
            except (Exception, BaseExceptionGroup) as exc:  # a failing check: fuzz the rest, report all at the end
                causes = getattr(exc, "exceptions", None) or [exc]  # a failure group, or a flaky one, holds them
                failures[f"{operation.label} ({mode.value})"] = "\n".join(str(cause)[:1500] for cause in causes)
    print(f"\nschemathesis: {len(tried)} cases over {len(operations)} operations, {len(failures)} failing")
    assert not failures, "\n\n".join(f"{name}: {error}" for name, error in failures.items())
    assert len(tried) >= len(operations) * EXAMPLES  # as many cases as one full mode over every operation, at least
