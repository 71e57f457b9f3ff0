"""Content credentials over HTTP: every output format carries a C2PA manifest that c2pa-python's reader validates
against the configured (development) chain, renditions name their parent, a changed byte fails, the watermark is
found by the check route, and a recipe replays bit for bit on the tiny models. Bad input names its field."""
import datetime
import io
import json

import c2pa
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import png, upload, wait_task
from PIL import Image
from pydantic import ValidationError

from cluster.local import credentials_chain
from composition.credentials.chain import load_chain, signing_hook
from composition.credentials.recipe import RECIPE_LABEL, Recipe
from composition.credentials.signing import GENERATED, ContentSigner
from config.composition import CompositionArgs, CredentialsArgs

PROMPT = "a lighthouse keeper's brass telescope at dusk"


@pytest.fixture(scope="module")
def trusted(montage, tmp_path_factory):
    """A c2pa context trusting only the root the app generated (MONTAGE_DATA_DIR of the session's replicas)."""
    [root] = tmp_path_factory.getbasetemp().glob("data[0-9]*/credentials/root.pem")
    root = root.read_text()
    return c2pa.Context.from_dict({"trust": {"trust_anchors": root}, "verify": {"verify_trust": True}})


def read(trusted, data: bytes, content_type: str) -> tuple[str, dict, list[str]]:
    """Validation state, active manifest and failure codes of `data`."""
    with c2pa.Reader(content_type, io.BytesIO(data), context=trusted) as reader:
        failures = [f["code"] for f in (reader.get_validation_results()["activeManifest"].get("failure") or [])]
        return reader.get_validation_state(), reader.get_active_manifest(), failures


def assertion(manifest: dict, label: str) -> dict:
    return next(a["data"] for a in manifest["assertions"] if a["label"] == label)


def test_every_image_format_is_signed_and_renditions_name_their_parent(client, trusted):
    body = {"prompt": PROMPT, "model": "sdxl", "width": 64, "height": 64, "seed": 11, "steps": 2}
    first = client.post("/v1/images/generations", json=body | {"output_format": "webp"}).json()
    cached = client.post("/v1/images/generations", json=body).json()  # the PNG variant, from cache
    jpeg = client.post("/v1/images/generations", json=body | {"output_format": "jpeg"}).json()  # made on a cache hit
    assert (first["cache_hit"], cached["cache_hit"], jpeg["cache_hit"]) == (False, True, True)
    png_ref = cached["images"][0]
    original = client.get(png_ref["url"]).content
    state, manifest, _ = read(trusted, original, "image/png")
    assert state == "Trusted" and manifest["signature_info"]["common_name"] == "Montage development signer"
    [action] = assertion(manifest, "c2pa.actions.v2")["actions"]
    assert (action["action"], action["digitalSourceType"]) == ("c2pa.created", GENERATED)
    recipe = assertion(manifest, RECIPE_LABEL)
    assert (recipe["family"], recipe["seed"], recipe["steps"], recipe["width"]) == ("sdxl", 11, 2, 64)
    assert recipe["prompt_key"] == cached["prompt_key"] and "prompt" not in recipe  # include_prompt is off
    assert PROMPT.encode() not in original

    for result, content_type, served_from_cache in ((first, "image/webp", False), (jpeg, "image/jpeg", True)):
        data = client.get(result["images"][0]["url"]).content
        state, manifest, _ = read(trusted, data, content_type)
        derived = assertion(manifest, RECIPE_LABEL)
        assert state == "Trusted" and derived["parent"] == png_ref["asset_id"], manifest
        assert derived["served_from_cache"] is served_from_cache and derived["seed"] == 11
        assert [i["relationship"] for i in manifest["ingredients"]] == ["parentOf"]

    changed = bytearray(original)
    changed[-40] ^= 1  # a pixel byte of the image data, after signing
    state, _, failures = read(trusted, bytes(changed), "image/png")
    assert state == "Invalid" and "assertion.dataHash.mismatch" in failures

    provenance = client.get(f"{png_ref['url']}/provenance").json()
    assert provenance["manifest"]["state"] == "Trusted" and provenance["recipe"]["seed"] == 11
    assert "prompt" not in provenance["recipe"]
    uploaded = upload(client, png(seed=31))
    for route in ("provenance", "replay"):
        response = (client.get if route == "provenance" else client.post)(f"/v1/assets/{uploaded}/{route}")
        assert response.status_code == 404 and response.json()["error"]["field"] == "asset_id", response.text
        assert f"recipe of asset {uploaded}" in response.json()["error"]["message"]


def test_replay_hides_the_prompt_as_provenance_does(client):
    """include_prompt is off: replay's recipe is provenance's, without the prompt or the negative prompt."""
    body = {"prompt": "a copper weathervane shaped like a heron", "negative_prompt": "a private aside",
            "model": "sdxl", "width": 64, "height": 64, "seed": 12, "steps": 2, "wait_s": 120}
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    asset = response.json()["images"][0]["asset_id"]
    replay = client.post(f"/v1/assets/{asset}/replay")
    assert replay.status_code == 200, replay.text
    recipe = replay.json()["recipe"]
    assert "prompt" not in recipe and "negative_prompt" not in recipe, recipe
    assert body["prompt"] not in replay.text and body["negative_prompt"] not in replay.text
    assert recipe == client.get(f"/v1/assets/{asset}/provenance").json()["recipe"]


def test_a_video_and_its_gif_are_signed_with_the_image_as_ingredient(client, trusted):
    image = upload(client, png(64, 64, seed=32))
    response = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 4, "fps": 8,
                                                           "steps": 2, "gif": True, "wait_s": 120})
    result = response.json() if response.status_code == 200 else wait_task(client, response.json()["task_id"])["result"]
    for ref, content_type in ((result["video"], "video/mp4"), (result["gif"], "image/gif")):
        state, manifest, _ = read(trusted, client.get(ref["url"]).content, content_type)
        recipe = assertion(manifest, RECIPE_LABEL)
        assert state == "Trusted" and (recipe["operation"], recipe["source"]) == ("animate", image), manifest
        assert recipe["format"] == content_type.split("/")[1] and recipe["num_frames"] == 4
        assert manifest["ingredients"][0]["relationship"] == "parentOf"


def test_the_check_route_finds_the_watermark_and_a_changed_file(client):
    """A 256² image is the smallest that carries the watermark; it survives a JPEG quality-85 re-encode (the
    manifest does not: a new file) and is absent from an image Montage did not make."""
    body = {"prompt": "a tide chart pinned to a wall", "model": "sdxl", "width": 256, "height": 256, "seed": 5,
            "steps": 2}
    signed = client.get(client.post("/v1/images/generations", json=body).json()["images"][0]["url"]).content
    check = client.post("/v1/provenance/check", files={"file": ("a.png", signed, "image/png")}).json()
    assert check["montage"] and check["watermark"]["found"] and check["manifest"]["state"] == "Trusted", check
    assert check["pixels_changed"] is False and check["recipe"]["seed"] == 5

    buffer = io.BytesIO()
    Image.open(io.BytesIO(signed)).convert("RGB").save(buffer, "JPEG", quality=85)
    reencoded = client.post("/v1/provenance/check", files={"file": ("a.jpg", buffer.getvalue())}).json()
    assert reencoded["watermark"]["found"] and reencoded["manifest"]["state"] is None, reencoded
    rendition = client.post("/v1/images/generations", json=body | {"output_format": "jpeg"}).json()["images"][0]
    changed = bytearray(client.get(rendition["url"]).content)
    changed[-100] ^= 0x10  # a byte of the JPEG's scan data: it still decodes, to other pixels
    tampered = client.post("/v1/provenance/check", files={"file": ("a.jpg", bytes(changed))}).json()
    assert tampered["pixels_changed"] and tampered["manifest"]["state"] == "Invalid", tampered
    foreign = client.post("/v1/provenance/check", files={"file": ("b.png", png(256, 256, seed=33))}).json()
    assert not foreign["montage"] and not foreign["watermark"]["found"] and foreign["manifest"]["state"] is None
    for corrupt in (b"not an image at all", signed[:200]):
        response = client.post("/v1/provenance/check", files={"file": ("c.png", corrupt, "image/png")})
        assert response.status_code == 415 and response.json()["error"]["field"] == "file", response.text


def test_replay_is_bit_identical_on_the_tiny_models(client):
    """One small output per family (Kontext: an edit; SVD and Wan: clips), replayed from its recipe."""
    source = upload(client, png(64, 64, seed=34))
    crane = "an ultramarine origami crane on slate"  # near no other test's prompt: no approximate reuse
    requests = [("/v1/images/generations", {"prompt": crane, "model": "sdxl", "steps": 2}),
                ("/v1/images/generations", {"prompt": crane, "model": "flux", "steps": 2}),
                ("/v1/images/edits", {"prompt": "make it night", "image": source, "steps": 2}),
                ("/v1/videos/generations", {"image": source, "model": "svd", "num_frames": 4, "steps": 2}),
                ("/v1/videos/generations", {"image": source, "model": "wan", "num_frames": 5, "steps": 2})]
    for route, body in requests:
        response = client.post(route, json=body | {"width": 64, "height": 64, "seed": 7, "wait_s": 120})
        assert response.status_code == 200, response.text
        result = response.json()
        asset = (result["images"][0] if "images" in result else result["video"])["asset_id"]
        replay = client.post(f"/v1/assets/{asset}/replay")
        assert replay.status_code == 200, replay.text
        outcome = replay.json()
        assert outcome["identical"] and outcome["max_pixel_difference"] == 0, (route, body, outcome)
        assert outcome["asset_id"] == asset and outcome["frames"] == body.get("num_frames", 1)


def test_a_missing_or_expired_certificate_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValidationError) as missing:
        CompositionArgs.model_validate({"credentials": {"cert": str(tmp_path / "none.pem"),
                                                        "key": str(tmp_path / "none.key")}})
    assert {error["loc"] for error in missing.value.errors()} == {("credentials", "cert"), ("credentials", "key")}
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "expired")])
    now = datetime.datetime.now(datetime.UTC)
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now - datetime.timedelta(days=30))
               .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    with pytest.raises(ValidationError) as late:
        CompositionArgs.model_validate({"credentials": {"cert": str(tmp_path / "cert.pem"),
                                                        "key": str(tmp_path / "key.pem")}})
    [error] = late.value.errors()
    assert error["loc"] == ("credentials", "cert") and "expired" in error["msg"], json.dumps(error, default=str)
    with pytest.raises(ValidationError, match="go together"):
        CompositionArgs.model_validate({"credentials": {"key": str(tmp_path / "key.pem")}})
    config = tmp_path / "serve.yaml"  # `montage up` refuses to start, naming the field
    config.write_text(yaml.safe_dump({"applications": [{"args": {"composition": {"credentials": {
        "cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}}}}]}))
    with pytest.raises(ValueError, match=r"^composition\.credentials\.cert: .*expired"):
        credentials_chain(str(config))


def test_a_signing_hook_signs_with_a_key_montage_never_reads(tmp_path, monkeypatch):
    """`credentials.signer` (a KMS-style hook) with the chain of the key it holds: outputs validate against the
    root; a hook that does not import, a hook with a key, or one without its chain is refused naming the field."""
    folder = tmp_path / "credentials"
    dev = load_chain(CredentialsArgs(), folder)  # a chain and its key, the key handed to the "key service" only
    monkeypatch.setenv("MONTAGE_TEST_SIGNING_KEY", str(folder / "signer.key"))
    args = CredentialsArgs(cert=folder / "chain.pem", signer="signing_hook:sign")
    chain = load_chain(args)
    assert chain.key is None and chain.certs == dev.certs
    signer = ContentSigner(chain, hook=signing_hook(args.signer))
    recipe = Recipe(operation="generate", family="sdxl", model="tiny", model_source="tiny", device="cpu", seed=1,
                    steps=2, width=64, height=64, guidance=5.0, format="png")
    verdict = signer.verify(signer.sign(png(seed=3), "image/png", recipe), "image/png")
    assert verdict.state == "Trusted" and verdict.recipe["seed"] == 1, verdict
    with pytest.raises(ValueError, match=r"^credentials\.signer: cannot import signing_hook:nowhere"):
        signing_hook("signing_hook:nowhere")
    for given in ({"signer": "signing_hook:sign"}, {"signer": "signing_hook:sign", "cert": str(folder / "chain.pem"),
                                                      "key": str(folder / "signer.key")}):
        with pytest.raises(ValidationError, match="credentials.signer goes with credentials.cert"):
            CompositionArgs.model_validate({"credentials": given})
