"""The asset backends (records/blobs.py): a local folder and an object store, here S3 as emulated by moto's
server (an emulator, not AWS: a local HTTP server speaking the S3 protocol, offline). Both write once, refuse
anything but asset ids and anything over their size limit; the asset route streams from either (ranges, HEAD) and
can redirect to a signed object-store URL. The route runs in-process (ASGI) over the session's real Redis."""
import asyncio
import hashlib
import os
import re

import boto3
import httpx
import pytest
from helpers import png, s3_emulator
from pydantic import ValidationError

from composition.api import create_api
from composition.services import build_services
from composition.workflows.registry import build_workflows
from config.composition import CompositionArgs
from records.blobs import AssetTooLarge, LocalBlobs, ObjectBlobs, open_blobs

BUCKET, PREFIX = "montage-assets", "cluster/assets"
LIMIT = 4096
BAD_IDS = ["../" + "a" * 29, "a" * 31, "A" * 32, "a" * 33, "a" * 32 + "\n", "/" + "a" * 31, "aa/../" + "a" * 26,
           "..%2f" + "a" * 27, "", None]


def asset_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@pytest.fixture(scope="module")
def emulator():
    """The S3 emulator, and the standard AWS variables pointing at it for this module's tests only."""
    server, env = s3_emulator(BUCKET)
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    for key, value in before.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    server.stop()


def keys_in(s3) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path, emulator):
    """(Blobs with a LIMIT-byte cap, a list of everything it holds, read from outside the backend)."""
    if request.param == "local":
        root = tmp_path / "store"
        return LocalBlobs(root, LIMIT), lambda: sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                                                       if p.is_file())
    prefix = f"{PREFIX}/{re.sub(r'[^A-Za-z0-9_-]', '-', request.node.name)}"
    return ObjectBlobs(f"s3://{BUCKET}/{prefix}", LIMIT), lambda: [k for k in keys_in(emulator)
                                                                   if k.startswith(f"{prefix}/")]


def test_bytes_go_in_once_by_id_and_come_back_whole_or_in_ranges(backend):
    blobs, held = backend
    data = os.urandom(3000)
    key = asset_id(data)

    async def run():
        assert not await blobs.exists(key)
        await asyncio.gather(*(blobs.put_once(key, data) for _ in range(8)))  # racing writers agree
        await blobs.put_once(key, b"other bytes under the same id")  # write-once: the first bytes stay
        pieces = [b"".join([p async for p in blobs.stream(key, a, b)]) for a, b in ((0, 3000), (10, 20), (2999, 3000))]
        return await blobs.exists(key), await blobs.get(key), pieces

    exists, whole, pieces = asyncio.run(run())
    assert exists and whole == data
    assert pieces == [data, data[10:20], data[2999:]]
    stored = held()
    assert len(stored) == 1 and stored[0].endswith(f"/{key[:2]}/{key}")


def test_the_s3_backend_keeps_objects_under_its_prefix_only(emulator):
    blobs = ObjectBlobs(f"s3://{BUCKET}/{PREFIX}/layout", LIMIT)
    data = b"layout check"
    asyncio.run(blobs.put_once(asset_id(data), data))
    assert f"{PREFIX}/layout/{asset_id(data)[:2]}/{asset_id(data)}" in keys_in(emulator)
    obj = emulator.get_object(Bucket=BUCKET, Key=f"{PREFIX}/layout/{asset_id(data)[:2]}/{asset_id(data)}")
    assert obj["Body"].read() == data


@pytest.mark.parametrize("bad", BAD_IDS)
def test_anything_but_an_asset_id_is_refused_and_nothing_is_written(backend, bad):
    blobs, held = backend

    async def attempts():
        calls = [blobs.put_once(bad, b"x"), blobs.exists(bad), blobs.get(bad), blobs.signed_url(bad, 60)]
        for call in calls:
            with pytest.raises(ValueError, match="not an asset id"):
                await call
        with pytest.raises(ValueError, match="not an asset id"):
            [piece async for piece in blobs.stream(bad, 0, 1)]

    asyncio.run(attempts())
    assert held() == []


def test_size_limits_hold_for_writes_and_reads(backend, tmp_path):
    blobs, held = backend
    big, fits = os.urandom(LIMIT + 1), os.urandom(LIMIT)

    async def run():
        with pytest.raises(AssetTooLarge):
            await blobs.put_once(asset_id(big), big)
        await blobs.put_once(asset_id(fits), fits)
        roomier = type(blobs)(blobs.root if isinstance(blobs, LocalBlobs) else blobs.url, LIMIT * 2)
        await roomier.put_once(asset_id(big), big)  # written by a store with a higher limit: read back refused
        with pytest.raises(AssetTooLarge):
            await blobs.get(asset_id(big))
        return await blobs.get(asset_id(fits))

    assert asyncio.run(run()) == fits
    assert len(held()) == 2


def test_a_signed_url_serves_the_object_and_a_folder_has_none(backend):
    blobs, _ = backend
    data = b"signed bytes"
    asyncio.run(blobs.put_once(asset_id(data), data))
    url = asyncio.run(blobs.signed_url(asset_id(data), 60))
    if isinstance(blobs, LocalBlobs):
        assert url is None
        return
    assert url.startswith(os.environ["AWS_ENDPOINT_URL"]) and "X-Amz-Signature=" in url
    assert httpx.get(url).content == data  # (moto does not check signatures: only the URL's shape is S3's)


def test_settings_choose_the_backend(monkeypatch, tmp_path):
    url = f"s3://{BUCKET}/{PREFIX}"
    monkeypatch.delenv("MONTAGE_ASSET_URL", raising=False)
    monkeypatch.setenv("MONTAGE_ASSET_DIR", str(tmp_path / "env"))
    assert isinstance(local := open_blobs(CompositionArgs().asset_store), LocalBlobs) and local.root == tmp_path / "env"
    assert isinstance(s3 := open_blobs(CompositionArgs(asset_url=url).asset_store), ObjectBlobs) and s3.url == url
    monkeypatch.setenv("MONTAGE_ASSET_URL", url)
    assert isinstance(open_blobs(CompositionArgs().asset_store), ObjectBlobs)
    assert isinstance(open_blobs(CompositionArgs(asset_dir=tmp_path / "args").asset_store), LocalBlobs)  # app args first
    for bad in ("http://bucket/x", "s3://", "s3://../x", "file:///tmp", "s3://Bucket/x"):
        with pytest.raises(ValidationError):
            CompositionArgs(asset_url=bad)


def app_over(redis_url: str, **args):
    services = build_services(CompositionArgs(**args), redis_url, {}, {})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(services, build_workflows(services))),
                             base_url="http://montage")


def test_the_asset_route_streams_from_the_object_store(emulator, redis_url):
    own_db = redis_url.rsplit("/", 1)[0] + "/4"
    image = png(48, 48, seed=70)
    url = f"s3://{BUCKET}/{PREFIX}/route"

    async def run():
        async with app_over(own_db, asset_url=url) as client, \
                app_over(own_db, asset_url=f"{url}-elsewhere") as elsewhere, \
                app_over(own_db, asset_url=url, asset_redirect_s=60) as redirecting:
            made = await client.post("/v1/assets", files={"file": ("in.png", image, "image/png")})
            key = made.json()["id"]
            return made, key, {
                "whole": await client.get(f"/v1/assets/{key}"),
                "head": await client.head(f"/v1/assets/{key}"),
                "range": await client.get(f"/v1/assets/{key}", headers={"Range": "bytes=8-15"}),
                "suffix": await client.get(f"/v1/assets/{key}", headers={"Range": "bytes=-4"}),
                "open": await client.get(f"/v1/assets/{key}", headers={"Range": f"bytes={len(image) - 3}-"}),
                "several": await client.get(f"/v1/assets/{key}", headers={"Range": "bytes=0-1,4-5"}),
                "outside": await client.get(f"/v1/assets/{key}", headers={"Range": f"bytes={len(image)}-"}),
                "stale": await client.get(f"/v1/assets/{key}", headers={"Range": "bytes=0-1", "If-Range": '"x"'}),
                "missing": await client.get(f"/v1/assets/{'0' * 32}"),
                "other_store": await elsewhere.get(f"/v1/assets/{key}"),  # metadata in Redis, bytes not in that store
                "redirect": await redirecting.get(f"/v1/assets/{key}"),
            }

    made, key, got = asyncio.run(run())
    assert made.status_code == 201 and key == asset_id(image)
    assert f"{PREFIX}/route/{key[:2]}/{key}" in keys_in(emulator)
    whole = got["whole"]
    assert whole.status_code == 200 and whole.content == image and whole.headers["content-type"] == "image/png"
    assert whole.headers["content-length"] == str(len(image)) and whole.headers["etag"] == f'"{key}"'
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["cache-control"].startswith("public")
    head = got["head"]
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(image))
    assert (got["range"].status_code, got["range"].content) == (206, image[8:16])
    assert got["range"].headers["content-range"] == f"bytes 8-15/{len(image)}"
    assert (got["suffix"].status_code, got["suffix"].content) == (206, image[-4:])
    assert (got["open"].status_code, got["open"].content) == (206, image[-3:])
    assert (got["several"].status_code, got["several"].content) == (200, image)  # one range only: the whole
    assert (got["stale"].status_code, got["stale"].content) == (200, image)
    outside = got["outside"]
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(image)}"
    assert outside.json()["error"] == {"code": "range_not_satisfiable", "field": "Range",
                                       "message": f"Range: outside the asset's {len(image)} bytes"}
    assert got["missing"].status_code == 404 and got["other_store"].status_code == 404
    redirect = got["redirect"]
    assert redirect.status_code == 307 and redirect.headers["cache-control"] == "public, no-store"
    assert httpx.get(redirect.headers["location"]).content == image


def test_renditions_stored_at_once_give_every_caller_the_first_linked(tmp_path, redis_url):
    """Requests re-encoding one image at once each store their encoding (signed bytes differ by their time): the
    first linked is the rendition, every caller and every later lookup gets it."""
    from helpers import on_redis

    from composition.store.assets import AssetStore

    image = png(16, 16, seed=71)

    async def steps(client):
        store = AssetStore(client, LocalBlobs(tmp_path / "store", 1 << 20))
        source = await store.put(image, "image/png", "generated", "ana")
        first, second = [await store.put_rendition(source.id, "webp:90", image + bytes([n]), "image/webp", user)
                         for n, user in ((1, "ana"), (2, "bob"))]
        return first, second, await store.rendition(source.id, "webp:90", "cy"), await store.info(first.id, "bob")

    first, second, later, bobs = on_redis(redis_url, steps)
    assert second.id == first.id == later and bobs is not None  # bob's request got ana's encoding, now his too
