"""The page at ``/`` of zoo serve, in a real headless Chromium driven by selenium: for a run of each task type it
shows the model's facts, classifies an input of the kind the model takes as zoo predict does, explains it, and
shows the server's error for a bad one.

Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`; .ci/run installs them). Without
them these tests fail, saying so: a page nobody has loaded in a browser is not tested.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import SERVE_BACKBONES, val_inputs

from zoo import api

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60   # for the page to load its facts or show an answer (a 2-core machine running other tests too)


class _ThreadServer:
    """The app `zoo serve` runs, under uvicorn on a thread, on a free port of 127.0.0.1."""

    def __init__(self, app) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.socket = config.bind_socket()
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=WAIT_S)
        self.socket.close()


@pytest.fixture(scope="module")
def servers(serve_runs):
    """The URL of a server for each task's run, started on first use and stopped at the end of the module."""
    started: dict[str, _ThreadServer] = {}

    def url(task: str) -> str:
        if task not in started:
            started[task] = _ThreadServer(api.serving_app(serve_runs(task)))
        return started[task].url

    yield url
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Debian's chromedriver; never a download (selenium-manager stays offline)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run does) to test the page in a browser",
                    pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(WAIT_S)
        try:
            yield driver
        finally:
            driver.quit()


def _state(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def _wait_for(driver, *states: str) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(lambda d: _state(d) in states,
                                        f"the page did not reach {' or '.join(states)}")
    return _state(driver)


def _submit(driver, task: str, value: str) -> str:
    """Give the page ``value`` (a text, or a file's path), submit, and wait for the answer or an error."""
    from selenium.webdriver.common.by import By

    if task == "text-cls":
        box = driver.find_element(By.ID, "text")
        box.clear()
        if value:
            box.send_keys(value)
    else:
        driver.find_element(By.ID, "file").send_keys(value)
    driver.find_element(By.ID, "submit").click()
    return _wait_for(driver, "done", "error")


def _server_error(url: str, task: str, value: str) -> str:
    """The error the server answers ``value`` with, asked directly."""
    import httpx

    if task == "text-cls":
        answer = httpx.post(f"{url}/predict", json={"inputs": [value]}, timeout=WAIT_S)
    else:
        answer = httpx.post(f"{url}/predict", files=[("files", (Path(value).name, Path(value).read_bytes()))],
                            timeout=WAIT_S)
    assert 400 <= answer.status_code < 500, answer.text
    return answer.json()["error"]


def _no_address(message: str) -> str:
    return re.sub(r" at 0x[0-9a-f]+", "", message)


@pytest.mark.parametrize("task", sorted(SERVE_BACKBONES))
def test_the_page_classifies_as_zoo_predict_does_and_shows_the_servers_errors(task, serve_runs, servers, browser,
                                                                            tmp_path):
    from selenium.webdriver.common.by import By

    run = serve_runs(task)
    url = servers(task)
    sample = val_inputs(run, 1)[0]
    expected = api.predict(run, [sample], top_k=5)[0].labels
    record = json.loads((run / "zoo_run.json").read_text())

    browser.get(url + "/")
    assert _wait_for(browser, "ready", "error") == "ready", browser.find_element(By.ID, "error").text
    assert run.name in browser.title
    facts = browser.find_element(By.ID, "facts").text
    assert SERVE_BACKBONES[task] in facts and task in facts and "torch (pytorch)" in facts
    for label in record["labels"]:
        assert label in facts
    assert any(metric in facts for metric in record["metrics"]["best"]), facts

    assert _submit(browser, task, sample) == "done", browser.find_element(By.ID, "error").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert len(rows) == len(expected)   # the server's default top-k, as asked of zoo predict
    top = rows[0]
    shown_label = top.find_element(By.CSS_SELECTOR, ".label").text
    shown_score = top.find_element(By.CSS_SELECTOR, ".score").text
    assert shown_label == expected[0]["label"]
    assert shown_score == f"{expected[0]['score']:.4f}"
    assert float(top.get_attribute("data-score")) == pytest.approx(expected[0]["score"], abs=1e-5)
    shot = tmp_path / f"{task}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Why: the same input posted to /explain, its answer shown as text (shaded words, or the top regions or seconds).
    browser.find_element(By.ID, "explain").click()
    assert _wait_for(browser, "explained", "error") == "explained", browser.find_element(By.ID, "error").text
    why = browser.find_element(By.CSS_SELECTOR, "#explanation .why")
    assert why.get_attribute("data-label") == expected[0]["label"] and "completeness error" in why.text
    if task == "text-cls":
        assert browser.find_elements(By.CSS_SELECTOR, "#explanation .shaded .unit")
        shown = browser.find_element(By.CSS_SELECTOR, "#explanation .shaded").text
        assert shown.split() == sample.split()
    else:
        assert browser.find_elements(By.CSS_SELECTOR, "#explanation ol.top li") or "nothing pushed" in why.text

    if task == "text-cls":
        bad = ""   # an empty text
    else:
        bad = str(tmp_path / "notes.txt")   # not an image, nor audio
        Path(bad).write_text("these are notes, not a picture or a sound\n")
    assert _submit(browser, task, bad) == "error"
    error = browser.find_element(By.ID, "error")
    # The decoders' messages may name the in-memory file they read (a repr with an address): one per request.
    assert error.is_displayed() and _no_address(error.text) == _no_address(_server_error(url, task, bad))
    assert not browser.find_element(By.ID, "results").is_displayed()


def test_the_page_is_self_contained_and_escapes_the_model_name(servers):
    import httpx

    from zoo.serve.app import page_html

    answer = httpx.get(servers("text-cls") + "/", timeout=WAIT_S)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    page = answer.text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page), "the page loads something from elsewhere"
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in page, f"the page writes markup with {sink}"
    hostile = page_html('<script>alert("x")</script>&"')
    assert "<script>alert" not in hostile and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&quot;" in hostile
