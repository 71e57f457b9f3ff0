"""The web page with auth required, in a real headless Chromium, and the session cookie behind it over plain HTTP:
the real app code on its own port (uvicorn) over the session's deployments and Redis."""
import hashlib
import json
import time
import uuid

import httpx
import pytest
import redis
from helpers import chromium_tab, png
from secured import access, bearer, served

from config import keys

TTL_S = 900  # access.session_ttl_s's default


@pytest.fixture(scope="module")
def site(montage, redis_url):
    """(base URL of the auth-required app, a key of user `web-…`, a key of another user)."""
    run = uuid.uuid4().hex[:8]
    ana, bob = access(redis_url, lambda store: store.create_key(f"web-{run}", "pro")), \
        access(redis_url, lambda store: store.create_key(f"other-{run}", "pro"))
    with served(redis_url, montage[1]) as base:
        yield base, ana[0], bob[0]


def open_session(base: str, key: str) -> tuple[httpx.Response, dict[str, str]]:
    """POST /v1/session with `key`: the answer and the cookie header that carries its session."""
    response = httpx.post(base + "/v1/session", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response, {"cookie": f"montage_session={response.cookies['montage_session']}"}


def upload_png(base: str, key: str, seed: int) -> str:
    """A noise PNG uploaded with `key` (private to its user); its asset id."""
    response = httpx.post(base + "/v1/assets", headers=bearer(key),
                          files={"file": ("in.png", png(seed=seed), "image/png")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def session_key(cookie: dict[str, str]) -> str:
    token = cookie["cookie"].split("=", 1)[1]
    return keys.session(hashlib.sha256(token.encode()).hexdigest())


def test_a_session_cookie_reads_media_and_task_events_only(site, redis_url):
    base, key, other = site
    store = redis.Redis.from_url(redis_url)
    asset = f"{base}/v1/assets/{upload_png(base, key, 71)}"  # private to its uploader
    assert httpx.post(base + "/v1/session").status_code == 401
    response, cookie = open_session(base, key)
    assert response.json()["user_id"].startswith("web-") and response.json()["expires_at"] > time.time() + TTL_S - 5
    attributes = {part.strip().lower() for part in response.headers["set-cookie"].split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/v1", f"max-age={TTL_S}"} <= attributes and "secure" not in attributes
    assert store.get(session_key(cookie)).decode() == hashlib.sha256(key.encode()).hexdigest()  # never the key
    assert TTL_S - 5 <= store.ttl(session_key(cookie)) <= TTL_S
    behind_https = httpx.post(base + "/v1/session", headers=bearer(key) | {"x-forwarded-proto": "https"})
    assert "secure" in behind_https.headers["set-cookie"].lower().split("; ")

    plain = httpx.get(asset)
    assert plain.status_code == 401 and plain.json()["error"]["field"] == "authorization"
    assert httpx.get(asset, headers=cookie).content == png(seed=71)
    assert httpx.head(asset, headers=cookie).status_code == 200
    tampered = {"cookie": cookie["cookie"][:-1] + ("A" if cookie["cookie"][-1] != "A" else "B")}
    assert httpx.get(asset, headers=tampered).status_code == 401
    assert httpx.get(asset, headers=open_session(base, other)[1]).status_code == 404  # the uploader's only

    task = httpx.post(base + "/v1/images/generations", headers=bearer(key), json={
        "prompt": f"a tin robot watering tulips {uuid.uuid4().hex}", "wait_s": 0}).json()["task_id"]
    assert httpx.get(f"{base}/v1/tasks/{task}/events").status_code == 401
    with httpx.stream("GET", f"{base}/v1/tasks/{task}/events", headers=cookie, timeout=120) as stream:
        assert stream.status_code == 200
        last = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")][-1]
    assert last["status"] == "succeeded"
    # the cookie is no key elsewhere: not on other reads, never on a method that changes state
    assert httpx.get(f"{base}/v1/tasks/{task}", headers=cookie).status_code == 401
    assert httpx.get(base + "/v1/projects", headers=cookie).status_code == 401
    assert httpx.post(base + "/v1/images/generations", headers=cookie, json={"prompt": "a kite"}).status_code == 401
    assert httpx.post(base + "/v1/assets", headers=cookie,
                      files={"file": ("in.png", png(seed=72), "image/png")}).status_code == 401
    assert httpx.post(base + "/v1/session", headers=cookie).status_code == 401

    store.pexpire(session_key(cookie), 1)  # expired
    time.sleep(0.05)
    assert httpx.get(asset, headers=cookie).status_code == 401


def test_a_session_ends_when_closed_or_its_key_is_revoked(site, redis_url):
    base, key, _ = site
    store = redis.Redis.from_url(redis_url)
    asset = f"{base}/v1/assets/{upload_png(base, key, 73)}"
    _, cookie = open_session(base, key)
    assert httpx.delete(base + "/v1/session", headers=cookie).status_code == 401  # the cookie cannot close itself
    closed = httpx.delete(base + "/v1/session", headers=bearer(key) | cookie)
    assert closed.status_code == 204 and "max-age=0" in closed.headers["set-cookie"].lower()
    assert not store.exists(session_key(cookie)) and httpx.get(asset, headers=cookie).status_code == 401

    doomed, record = access(redis_url, lambda store: store.create_key(f"doomed-{uuid.uuid4().hex[:6]}", "pro"))
    asset = f"{base}/v1/assets/{upload_png(base, doomed, 74)}"
    _, cookie = open_session(base, doomed)
    assert httpx.get(asset, headers=cookie).status_code == 200
    assert access(redis_url, lambda store: store.revoke(record.key_id))
    assert httpx.get(asset, headers=cookie).status_code == 401


@pytest.fixture(scope="module")
def page(site):
    with chromium_tab(site[0] + "/") as tab:
        yield tab


def test_the_page_with_a_pasted_key_generates_shows_and_streams(site, page):
    """Its image (<img>) and its task's SSE progress (EventSource) load without an Authorization header, on the
    session cookie; the controls send format, LoRA, project, and priority only when chosen."""
    base, key, _ = site
    sent, answered = [], {}
    page.on("request", lambda request: sent.append(request))
    page.on("response", lambda response: answered.setdefault(response.url.split("?")[0], response))
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#loras option[value=demo]", state="attached", timeout=30_000)  # /v1/adapters with the key
    project = f"web-{uuid.uuid4().hex[:6]}"
    page.fill("#project-name", project)
    page.click("#new-project")
    page.wait_for_function(f"document.querySelector('#project').selectedOptions[0].text === '{project}'")
    page.fill("#generate textarea[name=prompt]", f"a glass whale over a harbour {uuid.uuid4().hex[:6]}")
    page.select_option("#generate select[name=output_format]", "webp")
    page.select_option("#loras", "demo")
    page.fill("#generate input[name=lora_scale]", "0.8")
    page.click("#generate button")
    page.wait_for_function("document.querySelector('#generate-status').textContent === 'done'", timeout=120_000)
    image = page.query_selector("#gallery figure img")
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image, timeout=30_000)
    assert page.eval_on_selector("#generate-progress", "bar => bar.value") == 1  # set by the task's SSE events only

    [generation] = [r for r in sent if r.url.endswith("/v1/images/generations")]
    body = generation.post_data_json
    project_id = page.eval_on_selector("#project", "select => select.value")
    assert (body["output_format"], body["loras"], body["project_id"]) == ("webp", [{"id": "demo", "scale": 0.8}],
                                                                          project_id)
    assert "priority" not in body and body["wait_s"] == 0
    [events] = [r for r in sent if r.url.endswith("/events")]
    media = next(r for r in sent if r.url == base + image.get_attribute("src"))
    for request in (events, media):  # the cookie, never the key
        assert "authorization" not in request.all_headers() and "montage_session=" in request.all_headers()["cookie"]
    assert answered[events.url].status == 200 and answered[media.url].status == 200
    assert answered[media.url].headers["content-type"] == "image/webp"
    task_id = events.url.split("/")[-2]
    assert task_id in httpx.get(f"{base}/v1/projects/{project_id}", headers=bearer(key)).json()["tasks"]

    page.select_option("#priority", "high")  # sent when chosen: {"priority": "high"}
    page.click("#generate button")
    page.wait_for_function("!['', 'working…'].includes(document.querySelector('#generate-status').textContent)",
                           timeout=120_000)
    assert [r for r in sent if r.url.endswith("/v1/images/generations")][-1].post_data_json["priority"] == "high"
    page.select_option("#priority", "")


def test_the_writing_word_renders_in_the_shipped_cjk_font(site, page):
    """No CJK font is installed here: without the page's web font the word is a box (tofu)."""
    page.wait_for_function("""() => { let loaded = false;
        document.fonts.forEach((face) => { loaded ||= face.family === 'Montage CJK' && face.status === 'loaded'; });
        return loaded && document.fonts.check('48px "Montage CJK"', '雨'); }""", timeout=60_000)
    word = page.query_selector("#writing input[name=word]")
    assert word.input_value() == "雨"
    shipped = word.screenshot()
    word.evaluate("input => input.style.fontFamily = 'sans-serif'")
    assert word.screenshot() != shipped  # the glyph, not the fallback's box
    word.evaluate("input => input.style.fontFamily = ''")
    font = httpx.get(base_font := site[0] + "/web/fonts/noto-sans-cjk-jp.otf")
    assert font.status_code == 200 and font.headers["content-type"] == "font/otf" and font.content[:4] == b"OTTO"
    assert "max-age=604800" in font.headers["cache-control"] and font.headers["etag"]
    assert httpx.get(base_font, headers={"if-none-match": font.headers["etag"]}).status_code == 304
