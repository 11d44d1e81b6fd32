"""The rating page, served for real: its API over HTTP, and the page in headless Chromium
(votes by clicks and keys land in votes.jsonl, undo withdraws, a reload resumes)."""

import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.request

import pytest

import fake_comparison
from roots_jax.comparison import store

pytestmark = pytest.mark.extra("compare")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
  """(url, comparison directory) of the page served from a thread on a free port."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  from roots_jax.comparison import app  # pylint: disable=g-import-not-at-top
  directory = fake_comparison.make(tmp_path / "cmp")
  port = _free_port()
  srv = uvicorn.Server(uvicorn.Config(app.make_app(directory), host="127.0.0.1", port=port,
                                      log_level="warning"))
  thread = threading.Thread(target=srv.run, daemon=True)
  thread.start()
  deadline = time.time() + 20
  while not srv.started:
    assert time.time() < deadline and thread.is_alive(), "the server did not start"
    time.sleep(0.05)
  yield f"http://127.0.0.1:{port}", directory
  srv.should_exit = True
  thread.join(10)


def _post(url, body) -> dict:
  request = urllib.request.Request(url, json.dumps(body).encode(),
                                   {"Content-Type": "application/json"})
  with urllib.request.urlopen(request) as response:
    return json.load(response)


def _get(url) -> dict:
  with urllib.request.urlopen(url) as response:
    return json.load(response)


def _effective(directory, rater):
  return store.VoteLog(directory).votes(rater)


def test_api_votes_are_on_disk_when_the_request_returns(server):
  url, directory = server
  state = _get(f"{url}/api/state?rater=ann")
  assert state["done"] == 0 and state["total"] == 9
  shown = state["pair"]
  assert set(shown) == {"id", "prompt", "left", "right"}  # no model names on the page
  after = _post(f"{url}/api/vote", {"rater": "ann", "pair": shown["id"], "choice": "right"})
  with open(os.path.join(directory, store.VOTES)) as f:  # before anything else happens
    (line,) = [json.loads(l) for l in f]
  assert line["pair"] == shown["id"] and line["choice"] == "right"
  prompt = fake_comparison.PROMPTS.index(shown["prompt"])
  assert shown["left"] == f"<{line['left']} continues prompt {prompt}>"
  assert after["done"] == 1 and after["pair"]["id"] != shown["id"]
  assert _post(f"{url}/api/undo", {"rater": "ann"})["pair"]["id"] == shown["id"]
  assert _get(f"{url}/api/state?rater=bob")["done"] == 0
  with pytest.raises(urllib.error.HTTPError) as bad:
    _post(f"{url}/api/vote", {"rater": "ann", "pair": shown["id"], "choice": "maybe"})
  assert bad.value.code == 400 and "not one of" in json.load(bad.value)["error"]
  state = _get(f"{url}/api/state?rater=bob")
  while state["pair"] is not None:  # bob judges every pair, then there is none left
    state = _post(f"{url}/api/vote", {"rater": "bob", "pair": state["pair"]["id"], "choice": "tie"})
  assert state["done"] == 9 and len(_effective(directory, "bob")) == 9


@pytest.fixture
def browser():
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = shutil.which("chromium")  # Debian's, not a downloaded one
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
    options.add_argument(flag)
  driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
  yield driver
  driver.quit()


@pytest.mark.extra("browser")
def test_the_page_in_a_browser(server, browser):
  from selenium.webdriver.common import action_chains  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  url, directory = server
  text = lambda element_id: browser.find_element(By.ID, element_id).text

  def progress(expected):
    WebDriverWait(browser, 10).until(lambda d: text("progress") == expected)

  def shown():
    """(prompt index, left model, right model) of the pair on screen."""
    left, right = (re.fullmatch(r"<(\w+) continues prompt (\d)>", text(s)).groups()
                   for s in ("left", "right"))
    assert left[1] == right[1] and fake_comparison.PROMPTS[int(left[1])].strip() == \
        text("prompt").strip()
    return int(left[1]), left[0], right[0]

  def press(key):
    action_chains.ActionChains(browser).send_keys(key).perform()

  browser.get(url)
  progress("0 / 9")
  assert "Type your name" in text("message")
  browser.find_element(By.ID, "rater").send_keys("ann", Keys.TAB)
  seen = [shown()]
  browser.find_element(By.ID, "vote-left").click()
  progress("1 / 9")
  for count, key in enumerate(["2", "t", "x"], 2):
    seen.append(shown())
    press(key)
    progress(f"{count} / 9")
  browser.find_element(By.ID, "undo").click()  # withdraws "both bad"
  progress("3 / 9")
  assert shown() == seen[3]
  press("u")  # and the tie
  progress("2 / 9")
  assert shown() == seen[2]
  press("4")
  progress("3 / 9")
  votes = [json.loads(l) for l in open(os.path.join(directory, store.VOTES))]
  assert [v.get("choice", "undo") for v in votes] == [
      "left", "right", "tie", "both_bad", "undo", "undo", "both_bad"]
  effective = _effective(directory, "ann")
  assert [v["choice"] for v in effective] == ["left", "right", "both_bad"]
  id_to_prompt = {}
  for vote, (prompt, left, right) in zip(effective, seen):
    assert (vote["left"], vote["right"]) == (left, right)  # de-anonymised in the file only
    id_to_prompt[vote["pair"]] = prompt
  # Reloading continues where ann stopped (her name is remembered); bob starts afresh.
  after = shown()
  browser.refresh()
  progress("3 / 9")
  assert browser.find_element(By.ID, "rater").get_attribute("value") == "ann"
  assert shown() == after
  browser.get(f"{url}/?rater=bob")
  progress("0 / 9")
  assert shown() == seen[0]
  press("1")
  progress("1 / 9")
  assert [v["choice"] for v in _effective(directory, "bob")] == ["left"]
  assert len(_effective(directory, "ann")) == 3
