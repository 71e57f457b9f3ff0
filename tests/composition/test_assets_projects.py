"""Assets and projects over HTTP: content addressing, and projects round-tripping through a zip export."""
import io
import json
import time
import zipfile

import redis
from helpers import png, upload

from config import keys


def test_upload_is_content_addressed_inside_the_asset_dir(client, montage):
    _, asset_dir = montage
    image = png(32, 32, seed=40)
    first, second = upload(client, image), upload(client, image)
    assert first == second
    assert (asset_dir / first[:2] / first).read_bytes() == image
    download = client.get(f"/v1/assets/{first}")
    assert download.status_code == 200 and download.content == image
    assert download.headers["content-type"] == "image/png" and download.headers["etag"] == f'"{first}"'
    head = client.head(f"/v1/assets/{first}")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(image))
    part = client.get(f"/v1/assets/{first}", headers={"Range": "bytes=16-47"})  # as a <video> seeks
    assert part.status_code == 206 and part.content == image[16:48]
    assert part.headers["content-range"] == f"bytes 16-47/{len(image)}"
    outside = client.get(f"/v1/assets/{first}", headers={"Range": f"bytes={len(image)}-"})
    assert outside.status_code == 416 and outside.json()["error"]["field"] == "Range"


def test_project_groups_tasks_and_assets_and_round_trips_through_a_zip(client):
    project = client.post("/v1/projects", json={"name": "harbour", "user_id": "pia"})
    assert project.status_code == 201
    project_id = project.json()["id"]
    made = client.post("/v1/images/generations", json={"prompt": "a harbour at dawn with fishing boats",
                                                       "project_id": project_id, "user_id": "pia", "seed": 3})
    assert made.status_code == 200
    stored = client.get(f"/v1/projects/{project_id}").json()
    assert stored["tasks"] == [made.headers["X-Task-Id"]]
    assert stored["assets"] == [made.json()["images"][0]["asset_id"]]
    assert project_id in {p["id"] for p in client.get("/v1/projects", params={"user_id": "pia"}).json()["projects"]}
    assert project_id in {p["id"] for p in client.get("/v1/projects").json()["projects"]}  # auth off: every project

    exported = client.get(f"/v1/projects/{project_id}/export")
    assert exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert sorted(names) == sorted(["project.json", *(f"assets/{a}.png" for a in stored["assets"])])
    imported = client.post("/v1/projects/import", files={"file": ("p.zip", exported.content, "application/zip")})
    assert imported.status_code == 201, imported.text
    assert imported.json()["id"] != project_id and imported.json()["assets"] == stored["assets"]
    assert imported.json()["name"] == "harbour"


def test_import_keeps_the_tasks_and_importing_the_same_archive_again_answers_that_project(client, redis_url):
    """Three tasks survive export and import with their records and results: ids taken here are remapped, a free
    one is kept; the same archive again is the same project (200); an archive of bare asset names still imports."""
    project_id = client.post("/v1/projects", json={"name": "quay", "user_id": "rue"}).json()["id"]
    run = time.time_ns()
    prompts = [f"{p}, run {run}" for p in ("a quay with stacked barrels", "a ferry leaving at dusk",
                                          "an owl asleep in a barn")]
    made = [client.post("/v1/images/generations", json={"prompt": p, "project_id": project_id, "user_id": "rue"})
            for p in prompts]
    assert [m.status_code for m in made] == [200] * 3
    originals = {m.headers["X-Task-Id"]: client.get(f"/v1/tasks/{m.headers['X-Task-Id']}").json() for m in made}
    exported = client.get(f"/v1/projects/{project_id}/export").content
    archive = zipfile.ZipFile(io.BytesIO(exported))
    assets = client.get(f"/v1/projects/{project_id}").json()["assets"]
    assert sorted(archive.namelist()) == sorted(["project.json", *(f"assets/{a}.png" for a in assets)])
    freed = made[0].headers["X-Task-Id"]
    redis.Redis.from_url(redis_url).delete(keys.task(freed))  # its id is free here now

    first = client.post("/v1/projects/import", params={"user_id": "sol"},
                        files={"file": ("p.zip", exported, "application/zip")})
    assert first.status_code == 201, first.text
    imported = first.json()
    assert imported["created"] is True and set(imported["task_ids"]) == set(originals)
    assert imported["task_ids"][freed] == freed
    assert all(new != old for old, new in imported["task_ids"].items() if old != freed)
    assert sorted(imported["tasks"]) == sorted(imported["task_ids"].values())
    for old, new in imported["task_ids"].items():
        task = client.get(f"/v1/tasks/{new}").json()
        assert (task["status"], task["result"], task["kind"]) == ("succeeded", originals[old]["result"], "image")
        assert (task["user_id"], task["project_id"], task["created_at"]) == ("sol", imported["id"],
                                                                           originals[old]["created_at"])
    stats = client.get(f"/v1/projects/{imported['id']}/stats").json()
    assert stats["tasks"] == 3 and stats["tasks_by_status"] == {"succeeded": 3} and stats["assets"] == 3
    assert {t["id"] for t in client.get("/v1/tasks", params={"user_id": "sol"}).json()["tasks"]} == set(
        imported["task_ids"].values())

    again = client.post("/v1/projects/import", params={"user_id": "sol"},
                        files={"file": ("p.zip", exported, "application/zip")})
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["created"], again.json()["task_ids"]) == (
        imported["id"], False, imported["task_ids"])
    assert len(client.get("/v1/projects", params={"user_id": "sol"}).json()["projects"]) == 1

    bare = io.BytesIO()
    with zipfile.ZipFile(bare, "w") as older:  # an archive of an earlier version: assets/<id>
        for name in archive.namelist():
            older.writestr(name.split(".")[0] if name.startswith("assets/") else name, archive.read(name))
    copy = client.post("/v1/projects/import", params={"user_id": "sol"},
                       files={"file": ("p.zip", bare.getvalue(), "application/zip")})
    assert copy.status_code == 201 and copy.json()["id"] != imported["id"] and copy.json()["assets"] == sorted(assets)
    assert len(copy.json()["tasks"]) == 3 and not set(copy.json()["tasks"]) & set(imported["tasks"])


def test_a_project_with_a_video_and_its_gif_round_trips(client):
    """Every kind of asset the app makes comes back from its own export: PNG, MP4 and GIF."""
    from helpers import wait_task

    project_id = client.post("/v1/projects", json={"name": "clips", "user_id": "quin"}).json()["id"]
    source = upload(client, png(64, 64, seed=41))
    started = client.post("/v1/videos/generations", json={"image": source, "model": "svd", "gif": True,
                                                          "project_id": project_id, "user_id": "quin"})
    assert started.status_code == 202, started.text
    assert wait_task(client, started.json()["task_id"])["status"] == "succeeded"
    exported = client.get(f"/v1/projects/{project_id}/export")
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(exported.content)).read("project.json"))
    assert {"video/mp4", "image/gif"} <= {a["content_type"] for a in manifest["assets"]}
    imported = client.post("/v1/projects/import", files={"file": ("p.zip", exported.content, "application/zip")})
    assert imported.status_code == 201, imported.text
    assert sorted(imported.json()["assets"]) == sorted(client.get(f"/v1/projects/{project_id}").json()["assets"])
    # the OpenAI Videos view of the imported task (its record has no request: the export leaves it out) is the clip's
    original, copy = (client.get(f"/openai/v1/videos/video_{task_id}").json()
                      for task_id in (started.json()["task_id"], *imported.json()["task_ids"]))
    assert {name: copy[name] for name in ("model", "seconds", "size")} == {
        name: original[name] for name in ("model", "seconds", "size")} and original["model"] == "svd"

    failed = client.post("/v1/videos/generations", json={"image": source, "model": "wan", "num_frames": 8,
                                                         "project_id": project_id, "user_id": "quin"})
    assert failed.status_code == 422  # refused before queueing: not a task of the project
    stats = client.get(f"/v1/projects/{project_id}/stats").json()
    assert stats["tasks"] == 1 and stats["tasks_by_status"] == {"succeeded": 1} and stats["tasks_by_kind"] == {
        "video": 1}
    assert stats["assets_by_type"] == {"video/mp4": 1, "image/gif": 1} and stats["assets"] == 2
    assert stats["asset_bytes"] == sum(len(client.get(f"/v1/assets/{a}").content)
                                       for a in client.get(f"/v1/projects/{project_id}").json()["assets"])
    assert 0 < stats["task_seconds"] and stats["first_task_at"] == stats["last_task_at"]
    assert client.get("/v1/projects/" + "0" * 32 + "/stats").json()["error"]["field"] == "project_id"


def test_a_project_from_a_template_fills_the_fields_its_requests_leave_out(client):
    templates = {t["key"]: t for t in client.get("/v1/projects/templates").json()["templates"]}
    assert {"short_film", "comic_strip", "travel_diary"} <= set(templates)
    created = client.post("/v1/projects", json={"name": "strips", "template": "comic_strip", "user_id": "rae"})
    assert created.status_code == 201 and created.json()["defaults"] == templates["comic_strip"]["defaults"]
    project_id = created.json()["id"]
    assert client.get(f"/v1/projects/{project_id}").json()["template"] == "comic_strip"

    def generate(body: dict) -> tuple[str, str]:
        made = client.post("/v1/images/generations", json=body | {"project_id": project_id, "user_id": "rae"})
        assert made.status_code == 200, made.text
        return made.json()["images"][0]["metadata"]["model"], made.json()["prompt_used"]

    model, prompt = generate({"prompt": "a heron in the reeds, template probe"})
    assert model == "sdxl" and prompt.endswith("inked comic panel style")
    model, prompt = generate({"prompt": "a heron in the reeds, template probe", "model": "flux", "style": "pastel"})
    assert model == "flux" and prompt.endswith("pastel style")  # a request's own fields win
    optimized = client.post("/v1/prompts/optimize", json={"prompt": "a heron", "project_id": project_id})
    assert optimized.status_code == 200 and optimized.json()["mode"] == "artistic"
    unknown = client.post("/v1/projects", json={"name": "x", "template": "opera"})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "template"
    missing = client.post("/v1/prompts/optimize", json={"prompt": "a heron", "project_id": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "project_id"


def test_a_cached_result_requested_in_a_project_joins_the_project(client):
    body = {"prompt": "a brass compass on an old map", "n": 2}
    first = client.post("/v1/images/generations", json=body).json()
    project = client.post("/v1/projects", json={"name": "maps"}).json()["id"]
    again = client.post("/v1/images/generations", json=body | {"project_id": project}).json()
    assert again["cache_hit"] is True
    assets = client.get(f"/v1/projects/{project}").json()["assets"]
    assert sorted(assets) == sorted(image["asset_id"] for image in first["images"])
    head = client.head(first["images"][0]["url"])
    assert head.status_code == 200 and head.headers["content-type"] == "image/png" and head.content == b""
