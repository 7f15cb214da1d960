"""The explore page in a real browser: headless Chromium (Debian's chromium + chromium-driver, which .ci/run
installs) driven by selenium, against the real server over the tiny random ELM. It opens the page, waits for the
map, searches a title, clicks it, waits for the streamed answer, mixes it with a second movie, drags the a
slider and checks the text changed; it saves a screenshot beside the test's temporary files."""

from __future__ import annotations

import shutil
import time

import pytest

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM), reason="needs Debian's chromium and chromium-driver "
                                "(apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(predicate, timeout: float = 300, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_maps_searches_streams_and_interpolates(browser, explore_server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, _ = explore_server
    b = browser
    b.get(url)
    find = lambda css: b.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    points = wait(lambda: find("#map").get_attribute("data-points"), what="the map")
    assert int(points) > 9000
    wait(lambda: "ready" in find("#status").text, what="the model")
    done = lambda: int(find("#answer").get_attribute("data-done") or 0)  # noqa: E731

    def pick(query: str, title: str) -> None:
        box = find("#search")
        box.clear()
        box.send_keys(query)
        hit = wait(lambda: next((li for li in b.find_elements(By.CSS_SELECTOR, "#hits li") if li.text == title),
                                None), what=f"search hit {title}")
        hit.click()

    pick("toy story", "Toy Story (1995)")
    wait(lambda: done() == 1, what="the first answer")
    assert find("#answer").text and "Toy Story (1995)" in find("#where").text
    assert find("#answer-head").text == "Toy Story (1995)"

    find("#mode-mix").click()
    pick("matrix, the", "Matrix, The (1999)")
    wait(lambda: done() == 2, what="the answer at a = 0.5")
    at_half = find("#answer").text
    assert at_half and len(b.find_elements(By.CSS_SELECTOR, "#mix-path li")) == 5

    slider = find("#mix-slider")

    def drag(to_right: bool, answers: int) -> str:
        half = slider.size["width"] // 2 - 3
        ActionChains(b).click_and_hold(slider).move_by_offset(half if to_right else -half, 0).release().perform()
        wait(lambda: done() == answers, what="the answer after dragging the slider")
        return find("#answer").text

    at_b = drag(True, 3)  # a = 1: the second movie's own vector
    assert float(find("#mix-value").text) > 0.8
    at_a = drag(False, 4)  # a = 0: the first movie's own vector
    assert float(find("#mix-value").text) < 0.2
    assert at_a and at_b and at_a != at_b, "dragging the slider from one movie to the other must change the text"
    assert b.save_screenshot(str(tmp_path / "explore.png")) and (tmp_path / "explore.png").stat().st_size > 10_000
    assert not find("#message").text, find("#message").text
