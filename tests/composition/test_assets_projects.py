"""Assets and projects over HTTP: content addressing, and projects round-tripping through a zip export."""
import io
import json
import zipfile

from helpers import png, upload


def test_upload_is_content_addressed_inside_the_asset_dir(client, montage):
    _, asset_dir = montage
    image = png(32, 32, seed=40)
    first, second = upload(client, image), upload(client, image)
    assert first == second
    assert (asset_dir / first[:2] / first).read_bytes() == image
    download = client.get(f"/v1/assets/{first}")
    assert download.status_code == 200 and download.content == image
    assert download.headers["content-type"] == "image/png"


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
    assert sorted(names) == sorted(["project.json", *(f"assets/{a}" for a in stored["assets"])])
    imported = client.post("/v1/projects/import", files={"file": ("p.zip", exported.content, "application/zip")})
    assert imported.status_code == 201, imported.text
    assert imported.json()["id"] != project_id and imported.json()["assets"] == stored["assets"]
    assert imported.json()["name"] == "harbour"


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
