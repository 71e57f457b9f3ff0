"""The web page in a real headless Chromium (Debian's): generate an image, follow a video's live previews and run a
storyboard through the UI."""
import uuid

import pytest
from helpers import BASE, chromium_tab


@pytest.fixture(scope="module")
def page(montage):
    with chromium_tab(BASE + "/") as tab:
        yield tab


def test_generate_an_image_in_the_browser_then_fork_it(page, tmp_path):
    page.fill("#generate textarea[name=prompt]", f"a paper lantern floating over a pond, drawn in the browser "
                                                  f"{uuid.uuid4().hex[:6]}")
    page.select_option("#generate select[name=model]", "flux")
    page.fill("#generate input[name=steps]", "5")
    page.click("#generate button")
    image = page.wait_for_selector("#gallery figure img", timeout=120_000)
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image, timeout=30_000)
    assert "paper lantern" in page.inner_text("#gallery figcaption")
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
    assert (tmp_path / "generate.png").stat().st_size > 1000
    page.fill("#fork input[name=seed]", "9")  # the step left empty: the middle kept one, 2 of 5
    page.click("#fork button")
    page.wait_for_function("() => document.querySelectorAll('#gallery figure').length === 2", timeout=120_000)
    assert page.inner_text("#gallery figcaption").endswith("at step 2")
    assert page.inner_text("#fork-status") == "done"


def test_browse_a_souls_variants(page):
    page.fill("#soul input[name=style]", f"a lighthouse keeper in a yellow coat, woodcut {uuid.uuid4().hex[:6]}")
    for _ in range(2):
        page.evaluate("document.querySelector('#soul-status').textContent = ''")
        page.click("#soul button")
        page.wait_for_function("document.querySelector('#soul-status').textContent === 'done'", timeout=120_000)
    assert page.eval_on_selector_all("#variants img", "images => images.length") == 2


def test_the_soul_form_never_resets_a_profile_it_did_not_edit(page, client):
    soul = f"keeper-{uuid.uuid4().hex[:6]}"
    profile = {"name": "Keeper", "prompt": "a lighthouse keeper, woodcut", "model": "sdxl", "width": 64,
               "height": 64, "steps": 2}
    assert client.put(f"/v1/styles/{soul}", json=profile).status_code == 200
    page.fill("#soul input[name=soul_id]", soul)
    page.dispatch_event("#soul input[name=soul_id]", "change")
    page.wait_for_function(f"document.querySelector('#soul input[name=style]').value === '{profile['prompt']}'")
    page.evaluate("document.querySelector('#soul-status').textContent = ''")
    page.click("#soul button")
    page.wait_for_function("document.querySelector('#soul-status').textContent === 'done'", timeout=120_000)
    assert {k: v for k, v in client.get(f"/v1/styles/{soul}").json().items() if k in profile} == profile
    page.fill("#soul input[name=style]", "a lighthouse keeper, linocut")  # an edit changes the prompt only
    page.evaluate("document.querySelector('#soul-status').textContent = ''")
    page.click("#soul button")
    page.wait_for_function("document.querySelector('#soul-status').textContent === 'done'", timeout=120_000)
    stored = client.get(f"/v1/styles/{soul}").json()
    assert stored["prompt"] == "a lighthouse keeper, linocut" and stored["model"] == "sdxl" and stored["steps"] == 2


def test_edit_controlled_writing_and_video_forms(page, tmp_path):
    from helpers import png

    (tmp_path / "source.png").write_bytes(png(64, 64, seed=31))
    page.set_input_files("#source", str(tmp_path / "source.png"))
    for form, caption in (("edit", "edit: make it snowy"), ("controlled", "canny: a castle on a hill"),
                          ("writing", "雨 (comic)")):
        page.evaluate(f"document.querySelector('#{form}-status').textContent = ''")
        page.click(f"#{form} button")
        page.wait_for_function(f"document.querySelector('#{form}-status').textContent === 'done'", timeout=120_000)
        assert page.inner_text("#gallery figure figcaption") == caption  # the newest figure comes first
        image = page.query_selector("#gallery figure img")
        page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image, timeout=30_000)
    page.fill("#video input[name=num_frames]", "4")
    page.fill("#video input[name=steps]", "30")
    page.click("#video button")
    preview = page.wait_for_selector("#video-status-preview", timeout=120_000)  # live, before the clip is done
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview, timeout=30_000)
    assert preview.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert preview.get_attribute("title").endswith("of 30")
    video = page.wait_for_selector("#gallery figure video", timeout=240_000)
    assert page.inner_text("#video-status") == "done" and "4 frames" in page.inner_text("#gallery figcaption")
    assert video.get_attribute("src").startswith("/v1/assets/")


def test_storyboard_progress_streams_and_the_video_appears(page, tmp_path):
    page.fill("#storyboard input[name=theme]", "a kite that dreams of the moon")
    page.click("#storyboard button")
    page.wait_for_function("document.querySelector('#storyboard-status').textContent === 'done'", timeout=240_000)
    assert page.eval_on_selector("#storyboard-progress", "bar => bar.value") == 1
    assert page.query_selector("#gallery figure video") is not None
    assert page.inner_text("#gallery figure figcaption") == "storyboard: a kite that dreams of the moon"
    page.screenshot(path=str(tmp_path / "storyboard.png"), full_page=True)


def test_the_api_docs_render_with_the_network_blocked(page):
    """Swagger UI and ReDoc load their scripts, styles and the spec from the app itself; every request outside it is
    aborted (ReDoc's footer asks for its vendor's logo image, which is left blank)."""
    outside: list[str] = []

    def only_the_app(route):
        if route.request.url.startswith(BASE):
            route.continue_()
        else:
            if route.request.resource_type != "image":
                outside.append(route.request.url)
            route.abort()

    tab = page.context.browser.new_page()
    tab.route("**/*", only_the_app)
    tab.goto(BASE + "/docs")
    tab.wait_for_selector('.opblock-summary-path[data-path="/v1/images/generations"]', timeout=60_000)
    assert "Montage" in tab.inner_text(".swagger-ui .info")
    tab.goto(BASE + "/redoc")
    tab.wait_for_function("document.body.innerText.includes('/v1/images/generations')", timeout=60_000)
    tab.close()
    assert outside == []


def test_the_mask_painter_paints_a_mask_the_server_inpaints_with(page, client, tmp_path):
    import numpy as np
    from helpers import decode_png, png

    source = png(64, 64, seed=32)
    (tmp_path / "painted.png").write_bytes(source)
    page.set_input_files("#source", str(tmp_path / "painted.png"))
    page.click("#mask-load")
    page.wait_for_function("document.querySelector('#inpaint-status').textContent.startsWith('paint')")
    box = page.query_selector("#mask-painter").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (64, 64)  # the source's size (at most 256 a side)
    page.mouse.move(box["x"] + 8, box["y"] + 8)  # a stroke with the mouse, down the diagonal's first half
    page.mouse.down()
    for step in range(9, 33, 4):
        page.mouse.move(box["x"] + step, box["y"] + step)
    page.mouse.up()
    page.click("#inpaint button:not([type=button])")
    page.wait_for_function("document.querySelector('#inpaint-status').textContent === 'done'", timeout=120_000)
    assert page.inner_text("#gallery figure figcaption") == "inpaint (sdxl): a red balloon"
    made = np.asarray(decode_png(client.get(page.get_attribute("#gallery figure img", "src")).content).convert("RGB"))
    original = np.asarray(decode_png(source).convert("RGB"))
    np.testing.assert_array_equal(made[48:, 48:], original[48:, 48:])  # far from the stroke: the source's pixels
    assert np.abs(made[12:28, 12:28].astype(int) - original[12:28, 12:28]).mean() > 5  # under it: repainted
