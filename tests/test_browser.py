"""The upload page in a real browser (headless Chromium via Selenium) against the real function.

Each test serves the page with the Flask app on loopback, uploads a file through the file input,
waits for the answer and saves a screenshot under its tmp_path (copied to
$SKINSCAN_SCREENSHOT_DIR when that is set).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from conftest import SKIN9, free_port, image_bytes
from photos import encode, skin_photo
from skinscan_client import percent
from web.app import ERROR_MESSAGES, LEVEL_HEADINGS, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless browser not installed: apt-get install -y chromium chromium-driver",
)]

WAIT_S = 20


def start_chromium(profile: Path, javascript: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    browser.set_page_load_timeout(WAIT_S)
    return browser


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


def serve_page(function_url: str):
    server = make_server("127.0.0.1", 0, create_app(function_url), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def page_url(function_server):
    server = serve_page(function_server)
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def real_or_generated_photo(tmp_path: Path) -> Path:
    photos = sorted(p for p in SKIN9.glob("*/*.jpg") if p.stat().st_size < 10 * 1024 * 1024) if SKIN9.is_dir() else []
    if photos:
        return photos[0]
    path = tmp_path / "spot.jpg"
    path.write_bytes(image_bytes(size=(480, 360)))
    return path


def open_page(driver, url: str, width: int = 1280) -> None:
    driver.set_window_size(width, 900)
    driver.get(url)
    driver.get_log("browser")  # start each test with an empty console log


def upload(driver, path: Path):
    """Choose the file, press Analyse, wait until a result or an error replaces 'Analysing'."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    previous = driver.find_elements(By.CSS_SELECTOR, "#result > *")  # an earlier answer must go first
    driver.find_element(By.ID, "photo").send_keys(str(path))
    driver.find_element(By.ID, "analyse").click()
    for element in previous:
        WebDriverWait(driver, WAIT_S).until(EC.staleness_of(element))
    WebDriverWait(driver, WAIT_S).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#result .result, #result .error-box")))
    return driver.find_element(By.ID, "result")


def submit_without_javascript(browser) -> None:
    """Click Analyse and wait for the server's new page: the old page has a #result region too."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "analyse").click()
    WebDriverWait(browser, WAIT_S).until(EC.staleness_of(old_page))
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#result .result"))


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """A full-page PNG: the window is stretched to the page height first."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 140, 600), 4000))
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    if os.environ.get("SKINSCAN_SCREENSHOT_DIR"):
        target = Path(os.environ["SKINSCAN_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def assert_clean_console(driver) -> None:
    """No script errors and no Content-Security-Policy violations in the browser console."""
    problems = [entry["message"] for entry in driver.get_log("browser")
                if entry["level"] == "SEVERE" and "favicon" not in entry["message"]]
    assert not problems, problems


def assert_nothing_stored(driver) -> None:
    assert driver.get_cookies() == []
    assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0


def test_photo_upload_shows_four_conditions_and_advice(driver, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(driver, page_url)
    photo = real_or_generated_photo(tmp_path)
    region = upload(driver, photo)

    assert driver.find_element(By.ID, "preview").is_displayed()
    rows = region.find_elements(By.CSS_SELECTOR, ".prediction")
    assert len(rows) == 4
    for row in rows:
        assert row.find_element(By.CSS_SELECTOR, ".prediction-label").text
        assert row.find_element(By.CSS_SELECTOR, ".prediction-percent").text.endswith("%")
        assert 0 <= float(row.find_element(By.TAG_NAME, "meter").get_attribute("value")) <= 1
    assert region.find_element(By.CSS_SELECTOR, ".advice-heading").text in LEVEL_HEADINGS.values()
    assert len(region.find_element(By.CSS_SELECTOR, ".advice-message").text) > 20
    assert region.find_element(By.CSS_SELECTOR, "[data-slot='top-description']").text
    assert "not a diagnosis" in region.find_element(By.CSS_SELECTOR, ".disclaimer").text
    assert photo.name in region.text
    assert driver.execute_script("return document.activeElement.id") == "result-heading"
    assert region.get_attribute("aria-busy") == "false"
    assert_nothing_stored(driver)
    assert_clean_console(driver)
    screenshot(driver, tmp_path, "result-desktop")

    # the same answer on a phone-sized touch screen: a camera button, nothing wider than the viewport
    driver.set_window_size(390, 844)
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        if driver.execute_script("return matchMedia('(pointer: coarse)').matches"):
            assert driver.find_element(By.CSS_SELECTOR, "label[for='camera']").is_displayed()
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        screenshot(driver, tmp_path, "result-phone")
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})


def test_text_file_named_jpg_gets_a_friendly_error(driver, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(driver, page_url)
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo\n")
    region = upload(driver, fake)
    box = region.find_element(By.CSS_SELECTOR, ".error-box")
    message = box.find_element(By.CSS_SELECTOR, ".error-message").text
    assert message in (ERROR_MESSAGES["not_an_image"], ERROR_MESSAGES["corrupt_image"])
    assert "see a doctor" in box.text and "error" not in message.lower()
    assert not region.find_elements(By.CSS_SELECTOR, ".prediction")
    assert driver.find_element(By.ID, "analyse").is_enabled()  # the page does not hang
    screenshot(driver, tmp_path, "error-not-an-image")


def test_unusable_photo_says_how_to_take_a_better_one(driver, page_url, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    open_page(driver, page_url)
    flat = tmp_path / "flat.png"
    Image.new("RGB", (120, 120), (180, 140, 120)).save(flat, "PNG")
    region = upload(driver, flat)
    result = region.find_element(By.CSS_SELECTOR, ".result")
    assert "level-retake" in result.get_attribute("class")
    assert result.find_element(By.CSS_SELECTOR, ".advice-heading").text == LEVEL_HEADINGS["retake"]
    tips = result.find_element(By.CSS_SELECTOR, "[data-part='tips']").text.lower()
    assert "close" in tips and "focus" in tips and "light" in tips and "centre" in tips
    assert not result.find_elements(By.CSS_SELECTOR, ".prediction, [data-part='top']")
    assert_clean_console(driver)
    screenshot(driver, tmp_path, "not-recognised")


def test_function_unreachable_and_oversized_photo(driver, tmp_path):
    """Network failure and the client-side 10 MB check, without a function at all."""
    from selenium.webdriver.common.by import By

    server = serve_page(f"http://127.0.0.1:{free_port()}/")
    try:
        open_page(driver, f"http://127.0.0.1:{server.server_port}/")
        photo = tmp_path / "spot.jpg"
        photo.write_bytes(image_bytes())
        region = upload(driver, photo)
        assert region.find_element(By.CSS_SELECTOR, ".error-message").text == ERROR_MESSAGES["network"]

        big = tmp_path / "big.jpg"
        big.write_bytes(image_bytes() + b"\0" * (10 * 1024 * 1024))
        driver.find_element(By.ID, "photo").send_keys(str(big))
        message = region.find_element(By.CSS_SELECTOR, ".error-message").text
        assert message == ERROR_MESSAGES["too_large"]
        assert not driver.find_element(By.ID, "preview").is_displayed()
        screenshot(driver, tmp_path, "error-too-large")
    finally:
        server.shutdown()


def test_page_is_keyboard_operable(driver, page_url):
    """Tab reaches the skip link, the file picker, the questions, then Analyse; without a photo, a message."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(driver, page_url)
    order = []
    for _ in range(4):  # real key presses (send_keys on a file input would mean "choose this path")
        ActionChains(driver).send_keys(Keys.TAB).perform()
        order.append(driver.execute_script("return document.activeElement.id || document.activeElement.className"))
    assert order == ["skip-link", "photo", "questions-summary", "analyse"]
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    message = driver.find_element(By.CSS_SELECTOR, "#result .error-message").text
    assert message == ERROR_MESSAGES["missing_image"]
    assert driver.execute_script("return document.activeElement.id") == "error-heading"


def test_analysing_state_escaping_and_timeout(driver, tmp_path):
    """A stand-in function that answers slowly: the page shows 'Analysing', renders the answer's
    text as text (never HTML), and gives up with a friendly message when the answer is too slow."""
    import json
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from werkzeug.wrappers import Request, Response

    hostile = "<b id=injected>Melanoma</b>"
    answer = {"status": "ok",
              "predictions": [{"label": hostile, "probability": 0.62},
                              {"label": "Melanocytic nevus", "probability": 0.2},
                              {"label": "Dermatofibroma", "probability": 0.125},
                              {"label": "Vascular lesion", "probability": 0.004}],
              "recommendation": {"level": "urgent", "see_doctor": True, "message": "Please see a doctor <i>soon</i>."},
              "top_condition": {"label": hostile, "description": "<img src=x onerror=alert(1)>"},
              "disclaimer": "skinscan is not a diagnosis.", "model": {"name": "stand-in", "version": "0"}}
    delay = {"s": 1.0}

    @Request.application
    def slow_function(request):
        cors = {"Access-Control-Allow-Origin": "*"}
        if request.method == "OPTIONS":
            return Response(status=204, headers=cors)
        request.get_data()
        time.sleep(delay["s"])
        return Response(json.dumps(answer), mimetype="application/json", headers=cors)

    function = make_server("127.0.0.1", 0, slow_function, threaded=True)
    threading.Thread(target=function.serve_forever, daemon=True).start()
    server = serve_page(f"http://127.0.0.1:{function.server_port}/")
    try:
        open_page(driver, f"http://127.0.0.1:{server.server_port}/")
        photo = tmp_path / "spot.jpg"
        photo.write_bytes(image_bytes())
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        driver.find_element(By.ID, "analyse").click()
        analysing = driver.find_element(By.CSS_SELECTOR, "#result .analysing")
        assert "Analysing your photo" in analysing.text
        assert driver.find_element(By.ID, "result").get_attribute("aria-busy") == "true"
        assert not driver.find_element(By.ID, "analyse").is_enabled()
        screenshot(driver, tmp_path, "analysing")

        WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result .result"))
        region = driver.find_element(By.ID, "result")
        labels = [e.text for e in region.find_elements(By.CSS_SELECTOR, ".prediction-label")]
        assert labels[0] == hostile and len(labels) == 4
        percents = [e.text for e in region.find_elements(By.CSS_SELECTOR, ".prediction-percent")]
        assert percents == ["62%", "20%", "13%", "<1%"]
        assert percent(0.125) == "13%"  # the script rounds as skinscan_client.percent (page server, bot)
        description = region.find_element(By.CSS_SELECTOR, "[data-slot='top-description']").text
        assert description == answer["top_condition"]["description"]
        assert not driver.find_elements(By.CSS_SELECTOR, "#injected, #result img, #result i")
        assert "level-urgent" in region.find_element(By.CSS_SELECTOR, ".result").get_attribute("class")

        delay["s"] = 3.0
        driver.execute_script("window.SKINSCAN_CONFIG.timeoutMs = 500")
        driver.find_element(By.ID, "analyse").click()
        WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result .error-box"))
        assert driver.find_element(By.CSS_SELECTOR, "#result .error-message").text == ERROR_MESSAGES["timeout"]
        assert driver.find_element(By.ID, "analyse").is_enabled()
    finally:
        server.shutdown()
        function.shutdown()


def test_without_javascript_the_form_posts_to_the_server(page_url, tmp_path):
    """Progressive enhancement: with JavaScript off, the plain form upload renders the result."""
    from selenium.webdriver.common.by import By

    browser = start_chromium(tmp_path / "profile-nojs", javascript=False)
    try:
        open_page(browser, page_url)
        browser.find_element(By.ID, "photo").send_keys(str(real_or_generated_photo(tmp_path)))
        submit_without_javascript(browser)
        region = browser.find_element(By.ID, "result")  # a new page, rendered by Flask
        assert browser.current_url.endswith("/#result")
        assert len(region.find_elements(By.CSS_SELECTOR, ".prediction")) == 4
        assert region.find_element(By.CSS_SELECTOR, ".advice-heading").text in LEVEL_HEADINGS.values()
        assert browser.get_cookies() == []
        screenshot(browser, tmp_path, "no-javascript-result")

        # the questions work without JavaScript too: <details> opens natively, radios post as form fields
        browser.find_element(By.ID, "questions-summary").click()
        browser.find_element(By.ID, "photo").send_keys(str(real_or_generated_photo(tmp_path)))
        for choice in ("changed_size-yes", "irregular_shape-yes", "oozing-no"):
            browser.find_element(By.CSS_SELECTOR, f"label[for='{choice}']").click()
        submit_without_javascript(browser)
        effect = browser.find_element(By.CSS_SELECTOR, "#result [data-slot='checklist-effect']").text
        assert effect.startswith("Your answers")
        heading = browser.find_element(By.CSS_SELECTOR, "#result .advice-heading").text
        assert heading == LEVEL_HEADINGS["urgent"]  # 4 points: urgent, whatever the photo said
    finally:
        browser.quit()


def test_a_large_photo_is_sent_as_a_smaller_upright_copy(driver, fixture_model, use_model, tmp_path):
    """A 12-megapixel camera photo stored sideways (EXIF orientation 6) reaches the function
    as a JPEG of at most 1280 px, upright, without EXIF, and is classified."""
    import io

    import numpy as np
    from functions_framework import create_app as create_function_app
    from PIL import Image
    from selenium.webdriver.common.by import By

    from conftest import REPO

    received: list[bytes] = []
    use_model(fixture_model)
    function_app = create_function_app("classify", str(REPO / "functions" / "main.py"))

    def recording(environ, start_response):
        """Pass the request through unchanged, keeping a copy of the uploaded file."""
        from werkzeug.wrappers import Request

        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            copy = {**environ, "wsgi.input": io.BytesIO(body)}
            received.append(Request(copy).files["image"].read())
            environ = {**environ, "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": False}
        return function_app(environ, start_response)

    function = make_server("127.0.0.1", 0, recording, threaded=True)
    threading.Thread(target=function.serve_forever, daemon=True).start()
    page = serve_page(f"http://127.0.0.1:{function.server_port}/")
    try:
        rng = np.random.default_rng(1)
        yy, xx = np.mgrid[0:3000, 0:4000]  # stored 4000x3000, shown 3000x4000
        skin = np.stack([180 + 40 * np.sin(xx / 50), 140 + 30 * np.cos(yy / 40), 120 + 20 * np.sin((xx + yy) / 70)], -1)
        wide = np.clip(skin + rng.normal(0, 10, skin.shape), 0, 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x0112] = 6
        big = tmp_path / "camera.jpg"
        Image.fromarray(wide).save(big, "JPEG", quality=90, exif=exif)
        assert big.stat().st_size > 3 * 1024 * 1024

        open_page(driver, f"http://127.0.0.1:{page.server_port}/")
        region = upload(driver, big)
        assert len(region.find_elements(By.CSS_SELECTOR, ".prediction")) == 4, (
            region.text, [len(r) for r in received], [Image.open(io.BytesIO(r)).size for r in received])
        assert len(received) == 1
        sent = Image.open(io.BytesIO(received[0]))
        assert sent.format == "JPEG" and sent.size == (960, 1280)  # upright, long side 1280
        assert 0x0112 not in sent.getexif() and len(received[0]) < 2 * 1024 * 1024
    finally:
        page.shutdown()
        function.shutdown()


# -- the checklist questions (NICE NG12 weighted 7-point checklist) ---------------------------------
def photo_level(function_url: str, data: bytes) -> str:
    import httpx

    return httpx.post(function_url, files={"image": ("p.jpg", data, "image/jpeg")}, timeout=30).json()[
        "recommendation"]["level"]


def answer_questions(driver, choices: list[str]) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "questions-summary").click()
    for choice in choices:
        driver.find_element(By.CSS_SELECTOR, f"label[for='{choice}']").click()


def test_answers_that_raise_the_level(driver, function_server, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "spot.jpg"
    # A darker shot of the tests' photo: the fake backend (image statistics, no knowledge) reads it as
    # a mole to keep an eye on, so the answers are what raises the level.
    photo.write_bytes(encode(skin_photo().point(lambda v: int(v * 0.7)), "JPEG"))
    alone = photo_level(function_server, photo.read_bytes())
    assert alone in ("routine", "monitor"), alone  # the fake backend's view of this photo: not a referral
    open_page(driver, page_url)
    summary = driver.find_element(By.ID, "questions-summary")
    assert summary.text.startswith("Answer 7 quick questions for better advice")
    answer_questions(driver, ["changed_size-yes", "irregular_shape-no", "irregular_colour-yes",
                              "diameter_7mm-unsure"])
    region = upload(driver, photo)
    assert region.find_element(By.CSS_SELECTOR, ".advice-heading").text == LEVEL_HEADINGS["urgent"]
    effect = region.find_element(By.CSS_SELECTOR, "[data-slot='checklist-effect']").text
    assert effect == "Your answers raised this to: see a doctor within 2 weeks."
    assert region.find_element(By.CSS_SELECTOR, "[data-part='photo-alone']").text == (
        "The photo alone suggested: " + LEVEL_HEADINGS[alone])
    message = region.find_element(By.CSS_SELECTOR, ".advice-message").text
    assert "within 2 weeks" in message and "has changed in size and has uneven colour" in message
    assert len(region.find_elements(By.CSS_SELECTOR, ".prediction")) == 4
    assert_clean_console(driver)
    assert_nothing_stored(driver)
    driver.execute_script("document.getElementById('questions').scrollIntoView()")
    shot = screenshot(driver, tmp_path, "checklist-raised")
    if os.environ.get("SKINSCAN_CHECKLIST_SCREENSHOT"):
        shutil.copy(shot, os.environ["SKINSCAN_CHECKLIST_SCREENSHOT"])


def test_answers_that_do_not_raise_the_level(driver, function_server, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "spot.jpg"
    photo.write_bytes(image_bytes())
    alone = photo_level(function_server, photo.read_bytes())
    open_page(driver, page_url)
    answer_questions(driver, [f"{field}-no" for field in ("changed_size", "irregular_shape", "irregular_colour",
                                                         "diameter_7mm")] + ["inflamed-yes", "oozing-unsure"])
    region = upload(driver, photo)
    assert region.find_element(By.CSS_SELECTOR, ".advice-heading").text == LEVEL_HEADINGS[alone]
    effect = region.find_element(By.CSS_SELECTOR, "[data-slot='checklist-effect']").text
    assert effect == "Your answers (checklist score 1 of 10) did not raise the photo's suggestion; it stands."
    assert not region.find_elements(By.CSS_SELECTOR, "[data-part='photo-alone']")
    # and with no answers at all, there is no checklist part
    driver.get(page_url)
    region = upload(driver, photo)
    assert not region.find_elements(By.CSS_SELECTOR, "[data-part='checklist']")
    assert_clean_console(driver)


def test_the_questions_are_keyboard_operable_and_labelled(driver, page_url):
    """Tab to the questions, Enter opens them, Space answers, arrow keys move within a group."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def press(*keys):
        for key in keys:
            ActionChains(driver).send_keys(key).perform()

    def active() -> str:
        return driver.execute_script("return document.activeElement.id")

    open_page(driver, page_url)
    press(Keys.TAB, Keys.TAB, Keys.TAB)
    assert active() == "questions-summary"
    press(Keys.ENTER)
    assert driver.find_element(By.ID, "questions").get_attribute("open") is not None
    press(Keys.TAB)
    assert active() == "changed_size-yes"
    press(Keys.SPACE)
    press(Keys.TAB)
    assert active() == "irregular_shape-yes"
    press(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # a radio group: arrows move and choose
    assert active() == "irregular_shape-unsure"
    checked = driver.execute_script(
        "return Array.from(document.querySelectorAll('#questions input:checked')).map(i => i.id)")
    assert checked == ["changed_size-yes", "irregular_shape-unsure"]
    fieldsets = driver.find_elements(By.CSS_SELECTOR, "#questions fieldset.question")
    assert len(fieldsets) == 7
    for fieldset in fieldsets:
        assert fieldset.find_element(By.TAG_NAME, "legend").text.endswith("?")
        for radio in fieldset.find_elements(By.CSS_SELECTOR, "input[type='radio']"):
            label = driver.find_element(By.CSS_SELECTOR, f"label[for='{radio.get_attribute('id')}']")
            assert label.text in ("Yes", "No", "Not sure")
