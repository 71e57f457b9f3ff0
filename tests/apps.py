"""The app of serve_config.yaml deployed declaratively into the test session's Ray Serve, with the tests' settings
(a module of its own: test modules import it by name, which a `conftest` of another folder would shadow)."""
import time

import yaml

CLAIM_IDLE_S = 3.0  # runner reclaim delay in tests, so a killed runner's task is picked up quickly
# Webhooks in tests: local receivers (loopback allowed), retried quickly, given up after a minute
WEBHOOKS = {"allow_networks": ["127.0.0.0/8"], "retry_window_s": 60, "backoff_s": 0.5, "max_backoff_s": 2,
            "poll_s": 0.1, "timeout_s": 5}


def deploy_config(ray_serve, redis_url: str, asset_dir, family_args: dict | None = None,
                  family_entries: dict | None = None, wait: bool = True, **overrides) -> dict:
    """Deploys serve_config.yaml's app declaratively (as `serve deploy` does) and waits until it runs (unless not
    `wait`); `family_args` updates families' args (family → fields), `family_entries` their other fields (enabled,
    deployment: family → fields)."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    with open("serve_config.yaml") as handle:
        application = yaml.safe_load(handle)["applications"][0]
    application["args"]["redis_url"] = redis_url
    application["args"]["composition"] = {"asset_dir": str(asset_dir), "variant_cap": 3, "webhooks": WEBHOOKS}
    application["args"]["runner"]["runner"] = {"concurrency": 32, "claim_idle_s": CLAIM_IDLE_S, "heartbeat_s": 0.5}
    application["args"]["sdxl"]["args"]["adapters"] = {"max_mb": 1}  # a 1.5 MB upload is too big (tiny LoRAs: KBs)
    for family, fields in (family_args or {}).items():
        application["args"][family]["args"].update(fields)
    for family, fields in (family_entries or {}).items():
        application["args"][family].update(fields)
    application.update(overrides)
    serve_start().deploy_apps(ServeDeploySchema.model_validate({"applications": [application]}))
    if not wait:
        return application
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = ray_serve.status().applications.get("montage")
        if status and status.status == "RUNNING":
            return application
        time.sleep(1)
    raise TimeoutError(f"montage did not start: {ray_serve.status().applications.get('montage')}")


def restart_deployments(app: str, names: list[str]) -> None:
    """Redeploys the apps' own declarative configs (`composition.runtime_config.redeploy`) with each named deployment's
    actor options given a new environment variable: Serve replaces those deployments' replicas, stopping the old ones
    gracefully as on any redeploy, and no others (a change of the app's args would restart every deployment: Serve's
    code version of a declarative app hashes them)."""
    from ray.serve._private.api import serve_start

    from composition.runtime_config import deployed_configs, redeploy

    details = serve_start().get_serve_details()
    overrides = {}
    for name in names:
        options = details["applications"][app]["deployments"][name]["deployment_config"]["ray_actor_options"]
        options.setdefault("runtime_env", {}).setdefault("env_vars", {})["MONTAGE_TEST_RESTART"] = str(time.time_ns())
        overrides[name] = {"ray_actor_options": options}
    redeploy(details, deployed_configs(details), app, overrides)
