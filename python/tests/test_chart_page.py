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


def start_shim(tmp_path, token=None):
    """A synthetic streamer without HTTP, and mtf-shim serving its segment (with `token` as
    MTF_SHIM_TOKEN, if given)."""
    streamer = Streamer(tmp_path, ["--tick-rate", "4"], http=False)
    port = free_port()
    env = dict(os.environ)
    env.pop("MTF_SHIM_TOKEN", None)
    if token:
        env["MTF_SHIM_TOKEN"] = token
    proc = subprocess.Popen(
        [binary("mtf-shim"), "--segment-path", streamer.segment, "--bind", "127.0.0.1:%d" % port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    line = proc.stdout.readline().decode()
    assert "serving" in line, proc.stderr.read().decode()
    return streamer, port, proc


def stop_shim(streamer, proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    streamer.stop()


@pytest.fixture
def shim(tmp_path):
    streamer, port, proc = start_shim(tmp_path)
    yield streamer, port
    stop_shim(streamer, proc)


@pytest.fixture
def shim_with_token(tmp_path):
    streamer, port, proc = start_shim(tmp_path, token="s3cret-chart")
    yield streamer, port
    stop_shim(streamer, proc)


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

    # A new tick moves the forming candle (how fast is measured in the benchmarks, not here).
    before = page_state(browser)["last"]
    wait_for("a tick to move the forming candle",
             lambda: page_state(browser)["last"] != before, 20)

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


def test_with_a_token_the_page_loads_asks_for_it_and_streams_with_it(shim_with_token, browser):
    streamer, port = shim_with_token
    browser.get("http://127.0.0.1:%d/" % port)
    # The page and its assets come without the token; the data calls need it, so it asks.
    form = wait_for("the token form", lambda: (f := browser.find_element(By.ID, "login")).is_displayed() and f, 20)
    assert "needs its token" in browser.find_element(By.ID, "error").text
    browser.find_element(By.ID, "token").send_keys("s3cret-chart")
    form.submit()
    # History and the live stream (through fetch, with the header) both arrive.
    state = wait_for("candles and stream events on the page",
                     lambda: (s := page_state(browser)) and s["drawn"] > 100 and s["events"] > 0
                     and s["status"] and s, 30)
    assert state["status"]["liveness"] == "alive"
    assert browser.find_element(By.ID, "link").text == "live"
    # The token is in no URL the page used.
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and not any("s3cret" in u for u in urls + [browser.current_url]), urls
    # The browser logs the 401 that made the page ask; nothing else went wrong.
    errors = [e for e in severe(browser) if "401 (Unauthorized)" not in e["message"]]
    assert errors == [], "console errors on the page"
