"""The page at / in a real headless chromium (Selenium): upload a bona fide and a spoofed clip of the
shared corpus, read the decision and probability off the page, see a rejected file's message, and
take screenshots."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from helpers.checkpoints import SELECTION, save_tiny_checkpoint  # noqa: E402
from helpers.serving import running_server, smoke_clips  # noqa: E402
from rawguard.serve.app import load_detector  # noqa: E402
from rawguard.serve.settings import ServeSettings  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver; "
                ".ci/run installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,900",
                 # a fake microphone (a beeping tone) that needs no permission prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("browser") / "best.pt", SELECTION)
    settings = ServeSettings(checkpoint=str(checkpoint), max_upload_mb=1.0, threads=1)
    detector = load_detector(settings)
    with running_server(settings, detector) as server:
        yield server.url, detector


def upload(browser, path: Path):
    """Choose ``path`` in the page's file input and wait for the outcome (a result or an error)."""
    browser.execute_script("document.getElementById('result').style.display = 'none'; "
                           "document.getElementById('status').textContent = '';")
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "result").is_displayed() or d.find_element(By.ID, "status").get_attribute("class") == "error")


def test_page_scores_a_bonafide_and_a_spoofed_clip(browser, served, tmp_path):
    url, detector = served
    browser.get(url + "/")
    WebDriverWait(browser, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "rawnet-lite"))
    clips = smoke_clips()
    for label, path in (("bonafide", clips["bonafide"][0]), ("spoof", clips["spoof"][0])):
        expected = detector.score_file(path)
        upload(browser, path)
        decision = browser.find_element(By.ID, "decision")
        assert decision.get_attribute("data-decision") == expected.decision
        assert decision.text == ("Bona fide" if expected.decision == "bonafide" else "Spoof")
        shown = float(browser.find_element(By.ID, "probability").get_attribute("data-value"))
        assert shown == pytest.approx(expected.probability_bonafide, abs=1e-6)
        assert browser.find_element(By.ID, "filename").text == path.name
        dots = browser.find_elements(By.CSS_SELECTOR, "#timeline circle.window")
        assert len(dots) == len(expected.windows) > 1
        shaded = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.spoofed-range")
        assert len(shaded) == len(expected.spoofed_ranges)
        browser.save_screenshot(str(tmp_path / f"page_{label}.png"))
        assert (tmp_path / f"page_{label}.png").stat().st_size > 10_000


def test_page_explains_a_rejected_file(browser, served, tmp_path):
    url, _ = served
    browser.get(url + "/")
    fake = tmp_path / "notes.wav"
    fake.write_text("meeting notes, not audio\n" * 50)
    upload(browser, fake)
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("class") == "error"
    assert "Rejected (400)" in status.text and "unreadable or corrupt audio" in status.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    browser.save_screenshot(str(tmp_path / "page_rejected.png"))


def test_page_records_from_the_microphone(browser, served, tmp_path):
    url, _ = served
    browser.get(url + "/")
    record = browser.find_element(By.ID, "record")
    record.click()
    WebDriverWait(browser, 10).until(lambda d: record.text == "Stop and score")
    time.sleep(2.5)
    record.click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "result").is_displayed() or d.find_element(By.ID, "status").get_attribute("class") == "error")
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error", browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "filename").text == "microphone.wav"
    duration = float(browser.find_element(By.ID, "duration").text.removesuffix(" s"))
    assert 1.5 < duration < 6  # the recording, encoded as WAV in the page and decoded by the server
    assert browser.find_element(By.ID, "decision").get_attribute("data-decision") in ("bonafide", "spoof")
    browser.save_screenshot(str(tmp_path / "page_microphone.png"))
