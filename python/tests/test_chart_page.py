"""The live chart page (`GET /` of the shim) in a real browser: Debian's headless Chromium,
driven by selenium through Debian's chromedriver. A streamer writes a synthetic feed without
HTTP, and a separate mtf-shim serves the page, so that killing the streamer leaves the page
up to say so. The test saves a screenshot to target/chart-page.png."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT, Streamer, binary, free_port

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    # Loud, never silent: ./scripts/setup installs both on Debian.
    pytest.fail(
        "chromium and chromedriver are needed for the chart page's test and are not installed "
        "(./scripts/setup installs Debian's chromium and chromium-driver)",
        pytrace=False,
    )

from selenium import webdriver  # noqa: E402  (after the check, which explains a missing one)
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def shim(tmp_path):
    """A synthetic streamer without HTTP, and mtf-shim serving its segment."""
    streamer = Streamer(tmp_path, ["--tick-rate", "4"], http=False)
    port = free_port()
    proc = subprocess.Popen(
        [binary("mtf-shim"), "--segment-path", streamer.segment, "--bind", "127.0.0.1:%d" % port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    line = proc.stdout.readline().decode()
    assert "serving" in line, proc.stderr.read().decode()
    yield streamer, port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    streamer.stop()


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def page_state(driver):
    return driver.execute_script(
        "return window.mtf && {drawn: mtf.drawn, last: mtf.lastCandle, events: mtf.events,"
        " status: mtf.status, symbol: mtf.symbol, timeframe: mtf.timeframe};")


def wait_for(what, check, seconds):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def api_json(port, path):
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return json.loads(r.read())


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_draws_live_candles_and_says_when_the_writer_is_gone(shim, browser):
    streamer, port = shim
    browser.get("http://127.0.0.1:%d/" % port)

    # The chart draws the history, and the stream is live.
    state = wait_for("candles on the page",
                     lambda: (s := page_state(browser)) and s["drawn"] > 100 and s["status"] and s,
                     20)
    assert state["symbol"] == "BTCUSDc" and state["timeframe"] == "M1"
    assert state["status"]["liveness"] == "alive"
    canvases = browser.find_elements(By.CSS_SELECTOR, "#chart canvas")
    assert canvases, "lightweight-charts drew no canvas"
    assert browser.find_element(By.ID, "liveness").text == "alive"

    # The last candle on the page equals the API's newest candle (the feed ticks every 250 ms;
    # the page follows within its 100 ms coalescing interval, so they meet between ticks).
    def same_as_api():
        page = page_state(browser)["last"]
        api = api_json(port, "/streamer/candles/BTCUSDc/M1?limit=1")["candles"][0]
        return page == api and page
    wait_for("the page's last candle to equal /streamer/candles?limit=1", same_as_api, 10)

    # A new tick moves the forming candle within 1 s.
    before = page_state(browser)["last"]
    seen = time.monotonic()
    wait_for("a tick to move the forming candle",
             lambda: page_state(browser)["last"] != before, 1.0)
    assert time.monotonic() - seen <= 1.0

    assert severe(browser) == [], "console errors on the page"

    # The page on a phone-sized screen: everything still visible.
    browser.set_window_size(390, 844)
    time.sleep(0.5)
    chart = browser.find_element(By.ID, "chart")
    assert chart.size["width"] <= 390 and chart.size["height"] >= 240
    assert browser.find_element(By.ID, "symbol").is_displayed()
    browser.set_window_size(1280, 800)
    time.sleep(0.5)
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    browser.save_screenshot(os.path.join(ROOT, "target", "chart-page.png"))

    # Killing the streamer shows "writer gone".
    streamer.kill()
    wait_for('"writer gone" on the page',
             lambda: browser.find_element(By.ID, "liveness").text == "writer gone", 10)
