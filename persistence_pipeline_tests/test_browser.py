"""A real browser on the real UI: the Dagster webserver on localhost shows the dashboard image, each
check's real result over the range (not "Skipped"), and the partitions of the embedded data only.

Needs Debian's chromium and the playwright package (.ci/run installs both). Locally it skips with a
reason when either is missing; with PERSISTENCE_REQUIRE_BROWSER=1 (set by CI) it fails instead.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS
from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline_tests.conftest import Project, dagster_home

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _browser_or_skip():
    chromium = shutil.which("chromium")
    missing = [] if chromium else ["Debian's chromium"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        if os.environ.get("PERSISTENCE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {' and '.join(missing)} missing")
        pytest.skip(f"{' and '.join(missing)} not installed")
    return chromium


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


def test_dashboard_image_renders_in_the_dagster_ui(tmp_path):
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    home = dagster_home(tmp_path)
    home.mkdir(parents=True)
    project = Project(tmp_path, TradeSource(), ModelSettings())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            resources=project.resources(),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2021-01-04",
                "dagster/asset_partition_range_end": "2021-03-31",
            },
        )
        assert result.success
        days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2021-01-04", "2021-03-31"))
        for check in ASSET_CHECKS:
            for key in check.check_keys:  # what the UI's execution history lists: one row per day, decided
                history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
                assert sorted(str(record.partition) for record in history) == days, key
                assert {record.status.value for record in history} <= {"SUCCEEDED", "FAILED"}, key
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "persistence_pipeline.definitions",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", 120)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # the UI's community dialog, dismissed as its Skip button does (it stores this flag)
            page.add_init_script("window.localStorage.setItem('communityNux', '1')")
            page.goto(f"http://127.0.0.1:{port}/assets/persistence_dashboard", wait_until="networkidle")
            links = page.get_by_text("[Show Markdown]")
            links.first.wait_for(timeout=60_000)
            found = 0
            image = page.locator("img[src^='data:image/png;base64']")
            for index in range(links.count()):
                links.nth(index).click()
                page.get_by_role("dialog").first.wait_for(timeout=20_000)
                try:  # the dialog is open: its markdown renders the image at once, if it has one
                    image.first.wait_for(timeout=3_000)
                except Exception:  # this link's markdown holds no image (the summary row)
                    page.keyboard.press("Escape")
                    page.get_by_role("dialog").first.wait_for(state="hidden", timeout=20_000)
                    continue
                decoded = (
                    "() => { const i = document.querySelector(\"img[src^='data:image/png;base64']\");"
                    " return i.complete; }"
                )
                page.wait_for_function(decoded, timeout=20_000)
                found = page.evaluate(
                    "() => document.querySelector(\"img[src^='data:image/png;base64']\").naturalWidth"
                )
                break
            page.wait_for_timeout(1500)  # let the dialog finish fading in
            page.screenshot(path=str(tmp_path / "dashboard_in_ui.png"))
            page.goto(f"http://127.0.0.1:{port}/assets/trades?view=checks", wait_until="networkidle")
            page.get_by_text("Execution history").click()
            page.get_by_text("Passed").first.wait_for(timeout=30_000)
            checks_text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "checks_in_ui.png"))
            page.goto(f"http://127.0.0.1:{port}/assets/trades?view=partitions", wait_until="networkidle")
            page.get_by_text("Partitions Selected").first.wait_for(timeout=30_000)
            partitions_text = page.inner_text("body")
            browser.close()
        assert found == 1280, f"no rendered dashboard image (naturalWidth {found}); screenshot in {tmp_path}"
        assert "Skipped" not in checks_text, f"a check shows Skipped; screenshot in {tmp_path}"
        # 2013-01-02..2023-09-21: the embedded data's days, not up to today
        assert "3,915 Partitions Selected" in partitions_text and "Missing (3828)" in partitions_text
    finally:
        server.terminate()
        server.wait(timeout=30)
