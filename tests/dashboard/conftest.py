"""The dashboard's tests: a real headless Chromium (Debian's `chromium` and `chromium-driver`,
which scripts/services.sh installs) driven by Selenium against `pnas dashboard` processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT

SCREENSHOTS = ROOT / "out" / "screenshots"
CHROMIUM = os.environ.get("PNAS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PNAS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/dashboard/test_browser" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dashboard(env: dict, *args: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`pnas dashboard --port P ARGS` in its own process; (process, base URL) once it answers."""
    port = free_port()
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "pnas.cli", "dashboard", "--port", str(port), *args],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pnas dashboard exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/static/dashboard.css", timeout=2).close()
            return proc, url
        except urllib.error.HTTPError:  # it answers (401: it wants its token)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"pnas dashboard did not answer within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[object]:
    """A headless Chromium with a fresh profile, through Selenium and Debian's chromedriver."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"the browser tests need {CHROMIUM} and {CHROMEDRIVER}: run scripts/services.sh "
                    "(it installs Debian's chromium and chromium-driver)", pytrace=False)  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
