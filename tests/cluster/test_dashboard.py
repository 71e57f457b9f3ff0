"""What `montage up` prints reaches Ray's CLI and dashboard: run against the session's Ray (dashboard on :18265),
whose token authentication is on as a local `ray.init()` turns it on (or off where RAY_AUTH_MODE=disabled)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from helpers import DASHBOARD_PORT

from cluster.local import access_help, auth_token, ray_auth_mode
from config.specs import SPECS

DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
DEPLOYMENTS = {"Ingress", "TaskRunner", *(spec.deployment_name for spec in SPECS.values())}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def printed(montage):
    """(mode, token, the text `montage up` prints for this Ray, a new shell's environment)."""
    mode = ray_auth_mode(os.environ)  # the session's ray.init() set it to "token" unless the user disabled it
    shell = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    token = auth_token(BIN, shell) if mode == "token" else None
    return mode, token, access_help(mode, token, BIN, DASHBOARD), shell


def test_the_printed_serve_status_command_works_in_a_new_shell(printed):
    mode, token, text, shell = printed
    assert httpx.get(f"{DASHBOARD}/api/authentication_mode").json() == {"authentication_mode": mode}
    if mode == "token":  # what a new user met: Ray's CLI without the token is refused
        assert httpx.get(f"{DASHBOARD}/api/serve/applications/").status_code == 401
        assert token and token in text and "Authentication Token Required" in text
    [command] = [line.strip() for line in text.splitlines() if line.strip().endswith("serve status")]
    done = subprocess.run(["bash", "-c", command], env=shell | {"RAY_DASHBOARD_ADDRESS": DASHBOARD},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(yaml.safe_load(done.stdout)["applications"]["montage"]["deployments"]) == DEPLOYMENTS


def test_the_dashboard_serve_page_shows_every_deployment(printed, tmp_path):
    """A real Chromium opens the Serve page, answers the token dialog as the printed text says, and reads the
    Applications / Deployments table."""
    if CHROMIUM is None:
        pytest.fail("chromium not found: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    mode, token, _, _ = printed
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()
        tab.goto(f"{DASHBOARD}/#/serve")
        if mode == "token":
            tab.wait_for_selector("text=Authentication Token Required", timeout=60_000)
            tab.fill("input[placeholder='Enter your authentication token']", token)
            tab.get_by_role("button", name="Submit").click()
        tab.wait_for_function("names => { const cells = [...document.querySelectorAll('table td')]"
                              ".map(cell => cell.innerText.trim()); return names.every(n => cells.includes(n)); }",
                              arg=sorted(DEPLOYMENTS), timeout=60_000)
        assert tab.query_selector("text=Authentication Token Required") is None
        tab.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        browser.close()
