"""Assets and projects over HTTP: upload checks, content addressing, zip export/import with hostile archives,
and bad input everywhere answered with a 4xx naming the field."""
import io
import zipfile

import pytest
from helpers import png
from test_images import upload


def test_upload_is_content_addressed_inside_the_asset_dir(client, montage):
    _, asset_dir = montage
    image = png(32, 32, seed=40)
    first, second = upload(client, image), upload(client, image)
    assert first == second
    assert (asset_dir / first[:2] / first).read_bytes() == image
    download = client.get(f"/v1/assets/{first}")
    assert download.status_code == 200 and download.content == image
    assert download.headers["content-type"] == "image/png"


@pytest.mark.parametrize("payload,status", [(b"not an image at all", 415), (b"", 415)])
def test_upload_rejects_non_images(client, payload, status):
    response = client.post("/v1/assets", files={"file": ("x.png", payload, "image/png")})
    assert response.status_code == status and response.json()["error"]["field"] == "file"


def test_upload_rejects_decompression_bombs_and_oversize(client):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (20_000, 20_000)).save(buffer, "PNG")  # tiny file, 400 Mpx
    response = client.post("/v1/assets", files={"file": ("bomb.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 415 and "pixels" in response.json()["error"]["message"]
    big = client.post("/v1/assets", files={"file": ("big.png", b"\0" * (10 * 2**20 + 1), "image/png")})
    assert big.status_code == 413 and big.json()["error"]["field"] == "file"


@pytest.mark.parametrize("path", ["/v1/assets/..%2F..%2Fetc%2Fpasswd", "/v1/assets/../../etc/passwd",
                                  "/v1/assets/%2Fetc%2Fpasswd", "/v1/projects/..%2Fx", "/v1/tasks/..%2Fx",
                                  "/v1/prompts/..%2F..%2Fx/variants", "/v1/styles/..%2Fx",
                                  "/v1/assets/" + "a" * 31 + "g"])
def test_path_traversal_ids_are_refused(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert "root:" not in response.text and set(response.json()["error"]) == {"code", "message", "field"}


def test_unknown_asset_in_a_body_is_a_404_naming_the_field(client):
    response = client.post("/v1/images/edits", json={"image": "0" * 32, "prompt": "x"})
    assert response.status_code == 404 and response.json()["error"]["field"] == "image"
    response = client.post("/v1/images/controlled", json={
        "prompt": "x", "controls": [{"type": "canny", "image": "../../../etc/passwd"}]})
    assert response.status_code == 422 and response.json()["error"]["field"] == "controls.0.image"


@pytest.mark.parametrize("body,field", [
    ({"prompt": ""}, "prompt"), ({"prompt": "x" * 2001}, "prompt"), ({"prompt": "x", "width": 63}, "width"),
    ({"prompt": "x", "width": 4096}, "width"), ({"prompt": "x", "steps": 0}, "steps"), ({"prompt": "x", "n": 99}, "n"),
    ({"prompt": "x", "model": "dalle"}, "model"), ({"prompt": "x", "colour": "red"}, "colour"),
    ({"prompt": "x", "user_id": "../root"}, "user_id"),
])
def test_bad_generation_bodies_name_the_field(client, body, field):
    response = client.post("/v1/images/generations", json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["field"] == field, response.json()


def test_malformed_json_and_wrong_content_type_are_4xx(client):
    response = client.post("/v1/images/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = client.post("/v1/images/generations", content=b"prompt=x",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 422 and "error" in response.json()


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

    exported = client.get(f"/v1/projects/{project_id}/export")
    assert exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert sorted(names) == sorted(["project.json", *(f"assets/{a}" for a in stored["assets"])])
    imported = client.post("/v1/projects/import", files={"file": ("p.zip", exported.content, "application/zip")})
    assert imported.status_code == 201, imported.text
    assert imported.json()["id"] != project_id and imported.json()["assets"] == stored["assets"]
    assert imported.json()["name"] == "harbour"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


MANIFEST = b'{"project": {"name": "evil"}, "assets": []}'


@pytest.mark.parametrize("members", [
    {"project.json": MANIFEST, "../../evil.txt": b"x"},
    {"project.json": MANIFEST, "assets/../../../tmp/evil": b"x"},
    {"project.json": MANIFEST, "/etc/cron.d/evil": b"x"},
    {"project.json": MANIFEST, "assets/" + "0" * 32: b"\0" * 50_000_000},
    {"project.json": b"not json"},
    {"assets/" + "0" * 32: b"x"},
])
def test_hostile_project_zips_are_refused(client, members, montage):
    _, asset_dir = montage
    before = sorted(p.name for p in asset_dir.rglob("*"))
    response = client.post("/v1/projects/import", files={"file": ("p.zip", _zip(members), "application/zip")})
    assert response.status_code == 422 and response.json()["error"]["field"] == "file"
    assert sorted(p.name for p in asset_dir.rglob("*")) == before


def test_import_of_a_non_zip_is_refused(client):
    response = client.post("/v1/projects/import", files={"file": ("p.zip", b"PK\3\4garbage", "application/zip")})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_archive"
