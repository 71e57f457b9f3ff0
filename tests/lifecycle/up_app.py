"""A one-deployment Serve app for `montage up` lifecycle tests (tests/lifecycle/test_local.py)."""
from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Hello:
    def __call__(self, request) -> str:
        return "hello"


app = Hello.bind()
