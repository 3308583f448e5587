"""The web app in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
tests/install_browser.sh, which `make test` runs) uploads a video, waits for the timeline, checks that every predicted
phase is shown, and takes a screenshot: into the test's temporary folder, or, with OPHCLIP_UPDATE_SCREENSHOT=1, over
the one the README shows (docs/app/timeline.png), so that a test run never changes the checkout."""

import os
import shutil
from pathlib import Path

import pytest


CHROMIUM = os.environ.get("OPHCLIP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OPHCLIP_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "app" / "timeline.png"

pytest.importorskip("gradio", reason="the web app needs gradio (pip install -e '.[test]')")
pytest.importorskip("av")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives Chromium with selenium")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"headless Chromium is not installed ({CHROMIUM} and {CHROMEDRIVER}): run `sh tests/install_browser.sh` "
                "as root (apt-get install chromium chromium-driver), as `make test` does", allow_module_level=True)

from ophclip_testing import launch_app, save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from datasets_ophvl import generate_ophvl_mini

    from ophclip_cli.app import build_app

    root = tmp_path_factory.mktemp("app_browser")
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    model = save_tiny_model(root / "tiny-resnet")
    generate_ophvl_mini(root / "mini", size="tiny", progress=False, benchmark=8)
    demo = build_app(model, "cpu", str(root / "mini" / "benchmark"), batch_size=8)
    try:
        yield demo, launch_app(demo)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1500", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_a_video_and_see_its_timeline(app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    demo, url = app
    video = demo.core.examples[0]  # a demo benchmark video: its ground truth is drawn too
    _, rows, _ = demo.core.analyse(video, "ophvl-mini-phase")
    labels = demo.core.prompt_texts("ophvl-mini-phase", "")[0]
    predicted = {labels[max(range(len(labels)), key=p.__getitem__)] for _, _, p in rows}

    browser.get(url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-upload input[type=file]")))
    upload.send_keys(str(Path(video).resolve()))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-player video")))  # the upload is done
    browser.find_element(By.ID, "ophclip-analyse").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-timeline .ophclip-segment")))
    status = browser.find_element(By.ID, "ophclip-status").text
    assert "seconds classified against 6 classes" in status, status

    legend = [item.text.strip() for item in
              browser.find_elements(By.CSS_SELECTOR, "#ophclip-timeline .ophclip-legend-item")]
    assert predicted <= set(legend), (predicted, legend)
    tracks = [t.get_attribute("data-track") for t in browser.find_elements(By.CSS_SELECTOR, ".ophclip-track")]
    assert tracks == ["prediction", "ground truth"]
    drawn = {s.get_attribute("data-label") for s in browser.find_elements(
        By.CSS_SELECTOR, '.ophclip-track[data-track="prediction"] .ophclip-segment')}
    assert drawn == predicted
    table = browser.find_element(By.ID, "ophclip-durations").text
    for phase in predicted:  # the duration table names every predicted phase too
        assert phase in table
    assert "out-of-domain signal" in browser.find_element(By.ID, "ophclip-ood").text

    screenshot = README_SCREENSHOT if os.environ.get("OPHCLIP_UPDATE_SCREENSHOT") == "1" else tmp_path / "timeline.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(height, 900), 2400))
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_a_non_video_upload_shows_the_message_in_the_page(app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _, url = app
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video\n")
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-upload input[type=file]")))
    upload.send_keys(str(notes))
    wait.until(ec.text_to_be_present_in_element((By.ID, "ophclip-upload"), "notes"))  # the upload is done
    browser.find_element(By.ID, "ophclip-analyse").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-status .ophclip-error")))
    message = browser.find_element(By.ID, "ophclip-status").text
    assert "'notes.mp4' is not a readable video" in message and "Traceback" not in message


def test_search_shows_thumbnails_and_a_click_seeks_the_player(app, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    demo, url = app
    video = demo.core.examples[1]
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-upload input[type=file]")))
    upload.send_keys(str(Path(video).resolve()))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ophclip-player video")))
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Text search").click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#ophclip-query textarea"))).send_keys(
        "the surgeon makes the main incision")
    browser.find_element(By.ID, "ophclip-search").click()
    thumbnails = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ophclip-gallery img") or None)
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#ophclip-gallery .caption-label")] or \
        [img.get_attribute("alt") for img in thumbnails]
    assert len(thumbnails) == 6 and all(" at " in c and " s (score " in c for c in captions), captions
    times = [float(c.rsplit(" at ", 1)[1].split(" s", 1)[0]) for c in captions]
    pick = next(i for i, t in enumerate(times) if t > 0)
    thumbnails[pick].click()
    wait.until(lambda d: abs(d.execute_script(
        "const v = document.querySelector('#ophclip-player video'); return v ? v.currentTime : -1;")
        - times[pick]) < 1.0)
