"""Assets across nodes, inside multinode_app.py's cluster: the montage app (tiny SDXL, dedup off) with its ingress on
the head node and its task runner on the CPU node. Every node has its own MONTAGE_ASSET_DIR, as pods with local
disks have, and the S3 variables of moto's emulator (a local server speaking the S3 protocol, not AWS), as pods
with the object store's Secret have. One generation per storage setting, each on its own Redis database:

- separate: nothing configured, each node writes its own folder; the runner's image is not in the ingress's;
- shared: `asset_dir` names one folder every node mounts (here: one path on this machine);
- object_store: `asset_url` names a bucket prefix on the emulator; no folder is used at all.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

BUCKET, PREFIX = "montage-multinode", "assets"
NODES = ("head", "gpu", "cpu")
APP = "mn_montage"


def node_env(base: Path, node: str, s3_env: dict[str, str]) -> dict[str, str]:
    """A node's environment: its own asset folder, and the object store's variables."""
    return {"MONTAGE_ASSET_DIR": str(base / node), **s3_env}


def settings(base: Path) -> dict[str, dict[str, str]]:
    return {"separate": {}, "shared": {"asset_dir": str(base / "shared")},
            "object_store": {"asset_url": f"s3://{BUCKET}/{PREFIX}"}}


def app_args(redis_url: str, composition: dict[str, str]) -> dict[str, Any]:
    off = {"enabled": False, "args": {}}
    return {
        "redis_url": redis_url,
        "llm": off, "flux": off, "svd": off, "wan": off, "embedder": off,
        "sdxl": {"args": {"source": "tiny"},
                 "deployment": {"num_gpus": 0.2, "num_cpus": 0.1, "resources": {"gpu_node": 0.01},
                                "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.0}}},
        "ingress": {"num_cpus": 0.1, "resources": {"head_node": 0.01}},
        "runner": {"num_cpus": 0.1, "resources": {"cpu_node": 0.01}},
        "composition": {**composition, "dedup": {"enabled": False}},
    }


def digest(data: bytes) -> str:
    """What an asset's id is: the first 32 hex digits of its sha256."""
    return hashlib.sha256(data).hexdigest()[:32]


def files_under(folder: Path) -> dict[str, str]:
    """relative path → digest of every file under `folder`."""
    return {str(p.relative_to(folder)): digest(p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def run_setting(name: str, composition: dict[str, str], base: Path, redis_url: str, base_url: str, s3,
                replica_actors, log) -> dict[str, Any]:
    import httpx
    from ray import serve

    from composition.app import build_app

    serve.run(build_app(app_args(redis_url, composition)), name=APP, route_prefix="/")
    log(f"assets/{name}: app running")
    with httpx.Client(base_url=base_url, timeout=120) as client:
        deadline = time.monotonic() + 60
        while client.get("/healthz").status_code != 200:  # the proxy learns the route
            assert time.monotonic() < deadline, "the app's route never reached the proxy"
            time.sleep(0.5)
        made = client.post("/v1/images/generations", json={"prompt": f"a lighthouse in fog, {name}", "model": "sdxl",
                                                           "width": 64, "height": 64, "seed": 7, "wait_s": 90})
        asset_id = made.json()["images"][0]["asset_id"] if made.status_code == 200 else None
        served = client.get(f"/v1/assets/{asset_id}") if asset_id else None
    objects = {item["Key"]: digest(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
               for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    log(f"assets/{name}: generation {made.status_code}, download {served.status_code if served else None}")
    return dict(
        generation_status=made.status_code, generation_error=None if made.status_code == 200 else made.text[:500],
        asset_id=asset_id, download_status=served.status_code if served else None,
        download_digest=digest(served.content) if served is not None else None,
        download_png=served.content[:8].hex() if served is not None else None,
        folders={folder: files_under(base / folder) for folder in (*NODES, "shared")}, objects=objects,
        ingress=replica_actors(APP, "Ingress"), runner=replica_actors(APP, "TaskRunner"),
        sdxl=replica_actors(APP, "SDXL"))


def assets_scenario(base: Path, redis_url: str, http_port: int, s3_env: dict[str, str], replica_actors,
                    log) -> dict[str, Any]:
    """Each storage setting on one database of `redis_url`: what the runner wrote, where, and what the ingress
    served."""
    import boto3
    from ray import serve

    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name=s3_env["AWS_REGION"],
                      aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"])
    root = redis_url.rsplit("/", 1)[0]
    found = {}
    try:
        for db, (name, composition) in enumerate(settings(base).items(), start=1):
            found[name] = run_setting(name, composition, base, f"{root}/{db}", f"http://127.0.0.1:{http_port}", s3,
                                      replica_actors, log)
    finally:
        serve.delete(APP)
    return found
