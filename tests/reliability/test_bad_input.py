"""Bad input over real HTTP: every malformed, oversized, hostile or traversing request gets a 4xx with the error
envelope naming the field, never a 5xx or a stack trace, and nothing is written outside the asset store."""
import hashlib
import io
import json
import zipfile

import pytest
from helpers import png, upload


def assert_refused(response, status: int, field: str | None = None) -> dict:
    """A 4xx (`status`) with exactly the envelope's keys, naming `field` when given, and no traceback."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    if field is not None:
        assert error["field"] == field, error
    return error


@pytest.mark.parametrize("payload,status", [(b"not an image at all", 415), (b"", 415)])
def test_upload_rejects_non_images(client, payload, status):
    response = client.post("/v1/assets", files={"file": ("x.png", payload, "image/png")})
    assert_refused(response, status, "file")


def test_upload_rejects_a_truncated_image_whose_header_reads(client):
    """Its header names a 128² PNG, its pixels end early: refused before anything stores, edits or signs it."""
    whole = png(128, 128, seed=9)
    response = client.post("/v1/assets", files={"file": ("cut.png", whole[:len(whole) // 2], "image/png")})
    assert "truncated or corrupt" in assert_refused(response, 415, "file")["message"]


def test_upload_rejects_decompression_bombs_and_oversize(client):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (20_000, 20_000)).save(buffer, "PNG")  # tiny file, 400 Mpx
    response = client.post("/v1/assets", files={"file": ("bomb.png", buffer.getvalue(), "image/png")})
    assert "pixels" in assert_refused(response, 415, "file")["message"]
    big = client.post("/v1/assets", files={"file": ("big.png", b"\0" * (10 * 2**20 + 1), "image/png")})
    assert_refused(big, 413, "file")


@pytest.mark.parametrize("path,status", [
    ("/v1/assets/..%2F..%2Fetc%2Fpasswd", 404), ("/v1/assets/../../etc/passwd", 404),
    ("/v1/assets/%2Fetc%2Fpasswd", 404), ("/v1/projects/..%2Fx", 404), ("/v1/tasks/..%2Fx", 404),
    ("/v1/prompts/..%2F..%2Fx/variants", 404), ("/v1/styles/..%2Fx", 404), ("/v1/assets/" + "a" * 31 + "g", 422)])
def test_path_traversal_ids_are_refused(client, path, status):
    """A decoded slash leaves the route (404); an id of the wrong shape is refused naming it (422)."""
    response = client.get(path)
    assert_refused(response, status)
    assert "root:" not in response.text


def test_unknown_asset_in_a_body_is_a_404_naming_the_field(client):
    response = client.post("/v1/images/edits", json={"image": "0" * 32, "prompt": "x"})
    assert_refused(response, 404, "image")
    response = client.post("/v1/images/controlled", json={
        "prompt": "x", "controls": [{"type": "canny", "image": "../../../etc/passwd"}]})
    assert_refused(response, 422, "controls.0.image")


@pytest.fixture(scope="module")
def non_images(client) -> dict[str, str]:
    """Assets the server made that are not still images, by content type: a real clip's MP4 and GIF, and a JSON
    export (brought in by a project import, as a storyboard's export comes back)."""
    image = upload(client, png(64, 64, seed=41))
    clip = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 4, "gif": True,
                                                        "wait_s": 240})
    assert clip.status_code == 200, clip.text
    export = json.dumps({"scenes": []}).encode()
    export_id = hashlib.sha256(export).hexdigest()[:32]
    manifest = {"project": {"name": "exports"}, "assets": [{"id": export_id, "content_type": "application/json"}]}
    imported = client.post("/v1/projects/import", files={"file": ("p.zip", _zip({
        "project.json": json.dumps(manifest).encode(), f"assets/{export_id}.json": export}), "application/zip")})
    assert imported.status_code in (200, 201), imported.text
    return {"video/mp4": clip.json()["video"]["asset_id"], "image/gif": clip.json()["gif"]["asset_id"],
            "application/json": export_id}


@pytest.mark.parametrize("path,body,field", [
    ("/v1/images/edits", lambda source, still: {"image": source, "prompt": "x"}, "image"),
    ("/v1/images/generations", lambda source, still: {"image": source, "prompt": "x y z"}, "image"),
    ("/v1/images/controlled", lambda source, still: {"prompt": "x", "controls": [{"type": "canny", "image": still},
                                                                                 {"type": "depth", "image": source}]},
     "controls.1.image"),
    ("/v1/images/inpaint", lambda source, still: {"image": source, "prompt": "x"}, "image"),
    ("/v1/images/inpaint", lambda source, still: {"image": still, "mask": source, "prompt": "x"}, "mask"),
    ("/v1/images/outpaint", lambda source, still: {"image": source, "prompt": "x", "left": 16}, "image"),
    ("/v1/images/upscale", lambda source, still: {"image": source, "scale": 2}, "image"),
    ("/v1/videos/generations", lambda source, still: {"image": source, "model": "svd"}, "image"),
])
def test_a_source_that_is_no_still_image_is_a_422_at_submit_naming_its_field(client, non_images, path, body, field):
    """A video, its GIF or a JSON export named as a source image is refused before any task is made (none failing
    in a model, none retried into a 500): the models decode PNG, JPEG and WEBP stills."""
    still = upload(client, png(64, 64, seed=42))
    for content_type, source in non_images.items():
        user = f"source-{field.replace('.', '-')}-{path.rsplit('/', 1)[1]}-{content_type.replace('/', '-')}"
        error = assert_refused(client.post(path, json=body(source, still) | {"user_id": user}), 422, field)
        assert f"is {content_type}, not a PNG, JPEG or WEBP image" in error["message"], error
        assert client.get("/v1/tasks", params={"user_id": user}).json()["tasks"] == []


@pytest.mark.parametrize("body,field", [
    ({"prompt": ""}, "prompt"), ({"prompt": "x" * 2001}, "prompt"), ({"prompt": "x", "width": 63}, "width"),
    ({"prompt": "x", "width": 4096}, "width"), ({"prompt": "x", "steps": 0}, "steps"), ({"prompt": "x", "n": 99}, "n"),
    ({"prompt": "x", "model": "dalle"}, "model"), ({"prompt": "x", "colour": "red"}, "colour"),
    ({"prompt": "x", "user_id": "../root"}, "user_id"), ({"prompt": " \t\n", "model": "flux"}, "prompt"),
])
def test_bad_generation_bodies_name_the_field(client, body, field):
    response = client.post("/v1/images/generations", json=body)
    assert_refused(response, 422, field)


def test_malformed_json_is_the_400_the_openapi_document_names(client):
    documented = client.get("/openapi.json").json()["paths"]["/v1/images/generations"]["post"]["responses"]
    assert "parsed" in documented["400"]["description"]
    response = client.post("/v1/images/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert assert_refused(response, 400, "body")["code"] == "invalid_json"
    broken = client.post("/v1/images/generations", content=b'{"prompt": "a cat",}',
                         headers={"content-type": "application/json"})
    assert assert_refused(broken, 400, "body")["message"].startswith(
        "body: invalid JSON at character 19: Expecting property name")
    assert_refused(client.post("/v1/images/generations", json=[]), 422, "body")  # JSON, of the wrong shape


@pytest.mark.parametrize("bad,where", [(b'{"prompt": "\xff\xfe"}', "byte 12:"),
                                       (b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", "an integer: exceeds")])
def test_json_that_cannot_be_read_is_the_same_400_naming_body(client, bad, where):
    """Bytes that do not decode, or an integer past Python's 4300 digits, are JSON that cannot be read (not FastAPI's
    anonymous parse error)."""
    response = client.post("/v1/images/generations", content=bad, headers={"content-type": "application/json"})
    error = assert_refused(response, 400, "body")
    assert error["code"] == "invalid_json" and error["message"].startswith(f"body: invalid JSON at {where}"), error
    openai = client.post("/openai/v1/images/generations", content=bad, headers={"content-type": "application/json"})
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "body", openai.text


@pytest.mark.parametrize(("path", "content_type", "body"), [
    ("/v1/images/generations", "text/plain", b'{"prompt": "a cat"}'),
    ("/v1/images/generations", "application/x-www-form-urlencoded", b"prompt=x"),
    ("/v1/projects", "text/plain", b""),
    ("/v1/assets", "application/json", b'{"file": "x"}'),  # an upload is multipart
])
def test_a_body_of_another_content_type_is_a_415_naming_it(client, path, content_type, body):
    response = client.post(path, content=body, headers={"content-type": content_type})
    error = assert_refused(response, 415, "content-type")
    assert error["code"] == "unsupported_media_type" and content_type in error["message"]


def test_a_side_over_the_maximum_names_the_maximum_before_the_multiple(client):
    for path, body in (("/v1/images/generations", {"prompt": "x", "width": 4097}),
                       ("/v1/videos/generations", {"image": "0" * 32, "height": 4097})):
        message = assert_refused(client.post(path, json=body), 422)["message"]
        assert "2048" in message and "multiple" not in message, message
    assert "multiple of 8" in assert_refused(client.post("/v1/images/generations", json={"prompt": "x", "width": 12}),
                                             422, "width")["message"]


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
    assert_refused(response, 422, "file")
    assert sorted(p.name for p in asset_dir.rglob("*")) == before


def test_import_of_a_non_zip_is_refused(client):
    response = client.post("/v1/projects/import", files={"file": ("p.zip", b"PK\3\4garbage", "application/zip")})
    assert assert_refused(response, 422, "file")["code"] == "invalid_archive"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("content,status", [
    (f'{{"prompt": "x", "style": {nested(40)}}}', 422),  # deeper than max_json_depth (32)
    (f'{{"prompt": "x", "style": {nested(100_000)}}}', 422),  # would blow the parser's recursion
    (json.dumps({"prompt": "x", "negative_prompt": "y" * (2**20)}), 413),  # over max_json_bytes (1 MiB)
])
def test_deep_or_huge_json_is_refused_before_parsing(client, content, status):
    response = client.post("/v1/images/generations", content=content, headers={"content-type": "application/json"})
    assert_refused(response, status, "body")


@pytest.mark.parametrize("path,body,field", [
    ("/v1/videos/generations", {"image": "0" * 32, "num_frames": 10_000}, "num_frames"),
    ("/v1/videos/generations", {"image": "0" * 32, "steps": 10_000}, "steps"),
    ("/v1/videos/generations", {"image": "0" * 32, "width": 100_000}, "width"),
    ("/v1/videos/generations", {"image": "../../etc/passwd"}, "image"),
    ("/v1/storyboards", {"theme": "x", "num_scenes": 1000}, "num_scenes"),
    ("/v1/storyboards", {"theme": "t" * 100_000}, "theme"),
    ("/v1/images/edits", {"image": "0" * 32, "prompt": "x", "n": 1000}, "n"),
    ("/v1/prompts/optimize", {"prompt": "p" * 100_000}, "prompt"),
    ("/v1/writing", {"word": "w" * 10_000}, "word"),
])
def test_limits_on_frames_steps_sizes_counts_and_lengths(client, path, body, field):
    assert_refused(client.post(path, json=body), 422, field)


@pytest.mark.parametrize("method,path,content,field", [
    ("POST", "/v1/images/generations", '{"prompt": "x", "guidance": NaN}', "guidance"),
    ("POST", "/v1/images/generations", '{"prompt": "x", "strength": Infinity}', "strength"),
    ("POST", "/v1/images/controlled", '{"prompt": "x", "controls": [{"type": "canny", "image": "' + "0" * 32
     + '", "scale": NaN}]}', "controls.0.scale"),
    ("POST", "/v1/images/upscale", '{"image": "' + "0" * 32 + '", "strength": -Infinity}', "strength"),
    ("POST", "/v1/prompts/optimize", '{"prompt": "x", "temperature": NaN}', "temperature"),
    ("POST", "/v1/storyboards", '{"theme": "x", "scene_seconds": Infinity}', "scene_seconds"),
    ("POST", f"/v1/tasks/{'0' * 32}/fork", '{"step": 1, "strength": NaN}', "strength"),
    ("PATCH", "/v1/config", '{"deployments": {"sdxl": {"batch_wait_timeout_s": NaN}}}',
     "deployments.sdxl.batch_wait_timeout_s"),
    ("GET", "/v1/souls/nobody/image?user_id=u&wait_s=nan", None, "wait_s"),
])
def test_non_finite_numbers_are_refused_naming_the_field(client, method, path, content, field):
    """NaN and Infinity (JSON literals, a query) are not numbers a bound can judge: named as such."""
    response = client.request(method, path, content=content, headers={"content-type": "application/json"})
    assert "finite number" in assert_refused(response, 422, field)["message"]


@pytest.mark.parametrize("path,body,field,sent", [
    ("/v1/images/generations", {"prompt": "x", "n": True}, "n", "a boolean"),
    ("/v1/images/generations", {"prompt": "x", "n": "2"}, "n", "a string"),
    ("/v1/images/generations", {"prompt": "x", "steps": 4.0}, "steps", "a decimal number"),
    ("/v1/images/generations", {"prompt": "x", "guidance": "NaN"}, "guidance", "a string"),
    ("/v1/images/generations", {"prompt": "x", "reuse": "yes"}, "reuse", "a string"),
    ("/v1/images/generations", {"prompt": "x", "prompt_weighting": 1}, "prompt_weighting", "an integer"),
    ("/v1/images/generations", {"prompt": 5}, "prompt", "an integer"),
    ("/v1/images/controlled", {"prompt": "x", "controls": {"type": "canny"}}, "controls", "an object"),
    ("/v1/images/generations", {"prompt": "x", "loras": [{"id": "a", "scale": "0.5"}]}, "loras.0.scale", "a string"),
    ("/v1/videos/generations", {"image": "0" * 32, "wait_s": "Infinity"}, "wait_s", "a string"),
    ("/v1/storyboards", {"theme": "x", "num_scenes": "3"}, "num_scenes", "a string"),
    ("/v1/images/upscale", {"image": "0" * 32, "scale": 2.0}, "scale", "a decimal number"),
    ("/v1/images/generations", {"prompt": "x", "model": 5}, "model", "an integer"),
    ("/v1/images/generations", {"prompt": "x", "priority": True}, "priority", "a boolean"),
])
def test_a_value_of_another_json_type_is_refused_naming_the_field_and_what_was_sent(client, path, body, field, sent):
    """A JSON body's values keep their types (as OpenAI's API reads them): `"2"` or `true` is no integer."""
    error = assert_refused(client.post(path, json=body), 422, field)
    assert error["message"].endswith(f", not {sent}"), error


def test_form_fields_and_query_parameters_arrive_as_text_and_are_read_as_their_types(client):
    """OpenAI's multipart routes and the soul clip's query form send every value as text: read, not refused (its
    JSON route refuses the text, as OpenAI's does)."""
    generation = client.post("/openai/v1/images/generations", json={"prompt": "x", "n": "2"})
    assert generation.status_code == 400 and generation.json()["error"]["param"] == "n", generation.text
    edit = client.post("/openai/v1/images/edits", data={"prompt": "x", "n": "9"},
                       files={"image": ("a.png", png(64, 64, seed=2), "image/png")})
    assert edit.status_code == 400 and edit.json()["error"]["param"] == "n", edit.text
    assert "less than or equal to 8" in edit.json()["error"]["message"], edit.text  # read as 9, not refused as text
    clip = client.get("/v1/souls/nobody/video", params={"user_id": "u", "num_frames": "4", "gif": "false"})
    assert clip.status_code == 404 and clip.json()["error"]["field"] == "soul_id", clip.text


def test_non_finite_numbers_are_refused_on_the_openai_routes(client):
    response = client.post("/openai/v1/images/generations", content='{"prompt": "x", "n": 1, "loras": '
                           '[{"id": "a", "scale": Infinity}]}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "loras.0.scale", response.text


def test_sizes_past_the_tiny_deployments_pixel_limit_are_refused(client):
    """The API allows 2048²; a tiny CPU deployment serves frames of at most 512² pixels."""
    response = client.post("/v1/images/generations", json={"prompt": "x", "width": 1024, "height": 1024})
    assert "1024×1024 exceeds the 262144 pixels per frame sdxl" in assert_refused(response, 422, "width")["message"]
    response = client.post("/v1/storyboards", json={"theme": "x", "width": 1024, "height": 768})
    assert_refused(response, 422, "width")
    image = upload(client, png(64, 64))
    response = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "width": 576,
                                                           "height": 512})
    assert "576×512 exceeds" in assert_refused(response, 422, "width")["message"]


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/variants/..%2F..%2Fetc%2Fpasswd/seen"), ("GET", "/v1/souls/..%2Fx/image"),
    ("GET", "/v1/users/..%2Froot/seen"), ("DELETE", "/v1/tasks/..%2Fx"), ("GET", "/v1/tasks/..%2Fx/events"),
    ("GET", "/v1/projects/..%2F..%2Fx/export"), ("PUT", "/v1/styles/..%2Fx"),
])
def test_traversal_in_every_kind_of_id(client, method, path):
    response = client.request(method, path, params={"user_id": "u"}, json={"prompt": "x"} if method == "PUT" else None)
    assert_refused(response, 404)  # the decoded slash leaves the route


@pytest.mark.parametrize("path,body,field", [
    ("/v1/images/edits", {"image": "0" * 32, "prompt": "  "}, "prompt"),
    ("/v1/storyboards", {"script": " \t "}, "script"),
    ("/v1/selfies", {"soul_id": "s", "city_key": "rome", "user_id": "u", "mood": "  "}, "mood"),
    ("/v1/writing", {"word": "hi", "translation": " "}, "translation"),
    ("/v1/projects", {"name": "   "}, "name"),
])
def test_blank_text_is_refused_naming_its_field(client, path, body, field):
    """Whitespace is not text: refused at the door, never a task that fails inside a model."""
    assert "must not be blank" in assert_refused(client.post(path, json=body), 422, field)["message"]


def test_a_style_must_have_a_size_its_model_serves(client):
    response = client.put("/v1/styles/too-big", json={"prompt": "a giant", "model": "flux", "width": 1024,
                                                      "height": 1024})
    assert "exceeds" in assert_refused(response, 422, "width")["message"]
    assert client.get("/v1/styles/too-big").status_code == 404
