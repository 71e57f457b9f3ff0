"""The web page in a real headless Chromium (Debian's): generate an image and run a storyboard through the UI."""
import shutil
import uuid

import pytest
from helpers import BASE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(montage):
    if CHROMIUM is None:
        pytest.fail("chromium not found: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()
        tab.goto(BASE + "/")
        yield tab
        browser.close()


def test_generate_an_image_in_the_browser(page, tmp_path):
    page.fill("#generate textarea[name=prompt]", "a paper lantern floating over a pond, drawn in the browser")
    page.select_option("#generate select[name=model]", "flux")
    page.click("#generate button")
    image = page.wait_for_selector("#gallery figure img", timeout=120_000)
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image, timeout=30_000)
    assert "paper lantern" in page.inner_text("#gallery figcaption")
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
    assert (tmp_path / "generate.png").stat().st_size > 1000


def test_browse_a_souls_variants(page):
    page.fill("#soul input[name=style]", f"a lighthouse keeper in a yellow coat, woodcut {uuid.uuid4().hex[:6]}")
    for _ in range(2):
        page.evaluate("document.querySelector('#soul-status').textContent = ''")
        page.click("#soul button")
        page.wait_for_function("document.querySelector('#soul-status').textContent === 'done'", timeout=120_000)
    assert page.eval_on_selector_all("#variants img", "images => images.length") == 2


def test_storyboard_progress_streams_and_the_video_appears(page, tmp_path):
    page.fill("#storyboard input[name=theme]", "a kite that dreams of the moon")
    page.click("#storyboard button")
    page.wait_for_selector("#gallery video", timeout=240_000)
    assert page.eval_on_selector("#storyboard-progress", "bar => bar.value") == 1
    assert page.inner_text("#storyboard-status") == "done"
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
