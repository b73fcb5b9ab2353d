"""The kiosk page in Debian's chromium (headless, through chromium-driver): a question typed and
answered as a stream with evidence and sources, the answer rated ("Did this answer your
question?" No, with what was wanted: kept in the field log), a passage opened from a source, a
decline for an off-topic question, the page cleared after the idle time, and the next question
asked while the previous answer still finishes after its quote. Nothing is downloaded."""

import json
import os
import shutil
import signal
import time

import httpx
import pytest
from test_serve import PRESSURE, running

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,1300",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    # An explicit driver path: selenium's own manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 90):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def ask(driver, question: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


def _entries(folder, keep, timeout: float = 10):
    """The field log's entries that `keep` takes, once there are any (the verdict's POST is not
    awaited by the page)."""
    from outpost.runtime.field.log import FieldLog

    end = time.monotonic() + timeout
    while True:
        found = [e for e in FieldLog(folder).entries() if keep(e)]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.1)


def test_kiosk_page_streams_a_cited_answer_declines_and_resets(smol_bundle, browser, tmp_path):
    from selenium.webdriver.common.by import By

    log = tmp_path / "feedback"
    with running(smol_bundle, "--idle-reset", "30", "--feedback-dir", str(log)) as (url, _):
        browser.get(f"{url}/?idle=8")
        assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == "Your question"
        assert (
            browser.switch_to.active_element.get_attribute("id") == "question"
        )  # focus starts there
        # Record every text the answer shows while it is still streaming.
        browser.execute_script("""
            window.seen = [];
            new MutationObserver(() => {
              const t = document.querySelector('.turn[data-state=streaming] .answer');
              const q = document.querySelector('.turn[data-state=streaming] .evidence');
              if (t && t.textContent) window.seen.push(t.textContent);
              if (q) window.seen.push('quote: ' + q.textContent);
            }).observe(document.getElementById('turns'), {subtree: true, childList: true, characterData: true});
        """)
        ask(browser, PRESSURE)
        wait_for(browser, "return document.querySelector('.turn[data-state=done]')")
        turn = browser.find_element(By.CSS_SELECTOR, ".turn[data-state=done]")
        quote = turn.find_element(By.CSS_SELECTOR, ".evidence p").text
        assert "280" in quote and len(turn.find_elements(By.CSS_SELECTOR, ".evidence")) == 1
        if turn.get_attribute("data-mode") == "generated":  # the model's sentence above the quote
            assert "280" in turn.find_element(By.CSS_SELECTOR, ".answer").text
        else:  # the manual's line is the answer: no sentence above it
            assert turn.get_attribute("data-mode") == "quoted"
            assert not turn.find_elements(By.CSS_SELECTOR, ".answer")
        seen = browser.execute_script("return window.seen")
        assert any(s.startswith("quote: ") and "280" in s for s in seen)  # shown before the end
        sources = browser.find_elements(By.CSS_SELECTOR, ".turn .sources button")
        assert sources and sources[0].get_attribute("aria-label").startswith("Read the passage")
        if os.environ.get("OUTPOST_SCREENSHOT"):
            browser.save_screenshot(os.environ["OUTPOST_SCREENSHOT"])
        browser.save_screenshot(str(tmp_path / "kiosk.png"))
        assert (tmp_path / "kiosk.png").stat().st_size > 10_000

        # "Did this answer your question?": No, then what was wanted; the focus stays put.
        box = turn.find_element(By.CSS_SELECTOR, ".feedback")
        assert box.get_attribute("aria-label") == "Did this answer your question?"
        box.find_element(By.CSS_SELECTOR, "button[data-helpful=false]").click()
        note = wait_for(browser, "return document.querySelector('.feedback-note input')")
        note.send_keys("the ram force")
        box.find_element(By.CSS_SELECTOR, ".feedback-note button").click()
        wait_for(browser, "return document.querySelector('.feedback[data-state=thanked]')")
        assert box.text == "Thank you."
        entries = _entries(log, lambda e: e["kind"] == "verdict" and e.get("note"))
        (kept,) = _entries(log, lambda e: e["kind"] == "answer")
        assert kept["via"] == "kiosk" and kept["question"] == PRESSURE
        assert [(e["id"], e["helpful"], e["note"]) for e in entries] == [
            (kept["id"], False, "the ram force")
        ]

        # Tap a source: the passage opens with the quoted line highlighted.
        quoted = [b for b in sources if "px200-overview" in b.text] or sources
        quoted[0].click()
        wait_for(browser, "return document.getElementById('passage').open")
        marks = browser.find_elements(By.CSS_SELECTOR, "#passage-text mark")
        assert not marks or "280" in marks[0].text
        browser.find_element(By.ID, "passage-close").click()
        wait_for(browser, "return !document.getElementById('passage').open")

        ask(browser, "What is the capital of France?")
        wait_for(browser, "return document.querySelector('.turn[data-state=declined]')")
        declined = browser.find_element(By.CSS_SELECTOR, ".turn[data-state=declined] .answer").text
        assert declined.startswith("The manuals don't cover this")
        assert not browser.find_elements(By.CSS_SELECTOR, ".turn[data-state=declined] .sources")

        # Left alone, the shared screen clears itself.
        wait_for(browser, "return document.querySelectorAll('.turn').length === 0", timeout=30)
        assert "cleared" in browser.find_element(By.ID, "status").text

        labels = {"de": "Ihre Frage", "nb": "Spørsmålet ditt", "nl": "Uw vraag"}
        for lang, label in labels.items():
            browser.get(f"{url}/?lang={lang}")
            assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == label
            assert browser.execute_script("return document.documentElement.lang") == lang


FILTER = "How often must the hydraulic filter on the PX-200 press be replaced?"
# In order, what the page does to the Ask button, the turns and their quotes.
RECORD_CHANGES = """
    window.changes = [];
    const send = document.getElementById('send');
    new MutationObserver((records) => {
      for (const r of records) {
        const t = r.target;
        if (t === send) window.changes.push(r.oldValue === null ? 'send disabled' : 'send enabled');
        else if (r.type === 'attributes' && t.classList.contains('turn'))
          window.changes.push('turn ' + r.oldValue + ' -> ' + t.dataset.state);
        else for (const n of r.addedNodes)
          if (n.classList && n.classList.contains('evidence')) window.changes.push('quote');
      }
    }).observe(document.body, {subtree: true, childList: true, attributes: true,
                               attributeFilter: ['disabled', 'data-state'], attributeOldValue: true});
"""
QUOTE_SHOWN = """
    const done = arguments[arguments.length - 1];
    const shown = () => document.querySelector('.turn .evidence');
    if (shown()) return done(true);
    new MutationObserver((_, o) => { if (shown()) { o.disconnect(); done(true); } })
      .observe(document.getElementById('turns'), {subtree: true, childList: true});
"""


def test_the_next_question_can_be_asked_once_the_quote_is_shown(smol_bundle, browser):
    """The Ask button is free again once the quote is on screen, while the answer still
    finishes; a question asked then stops the first answer where it is (its quote kept, marked
    stopped, not failed), the server stops generating it (logged 499) and answers the second.
    The server process is paused (SIGSTOP) the moment the page shows the first quote, so that
    the first answer is seen still streaming however fast the model writes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with running(smol_bundle, "--max-concurrent", "1") as (url, proc):
        browser.get(url)
        browser.execute_script(RECORD_CHANGES)
        ask(browser, PRESSURE)
        browser.set_script_timeout(90)
        browser.execute_async_script(QUOTE_SHOWN)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            first = browser.find_element(By.CSS_SELECTOR, ".turn")
            assert first.get_attribute("data-state") == "streaming"
            assert "280" in first.find_element(By.CSS_SELECTOR, ".evidence.provisional").text
            send = browser.find_element(By.ID, "send")
            assert send.is_enabled()
            assert browser.execute_script("return document.body.dataset.state") == "streaming"
            assert browser.find_element(By.ID, "status").text.startswith("Still finishing")
            box = browser.find_element(By.ID, "question")
            box.send_keys(FILTER)
            assert box.get_attribute("value") == FILTER
            box.send_keys(Keys.ENTER)
            # Stopped at once, in the page: the quote stays, final, and nothing says failed.
            wait_for(browser, "return document.querySelector('.turn[data-state=stopped]')", 10)
            assert first.get_attribute("data-state") == "stopped"
            assert "280" in first.find_element(By.CSS_SELECTOR, ".evidence").text
            assert not first.find_elements(By.CSS_SELECTOR, ".provisional, .sources, .feedback")
            note = first.find_element(By.CSS_SELECTOR, ".stopped-note").text
            assert note == "Stopped for your next question; this answer was not finished."
            assert "went wrong" not in first.text
            turns = browser.find_elements(By.CSS_SELECTOR, ".turn")
            assert len(turns) == 2 and turns[1].get_attribute("data-state") == "streaming"
            assert not send.is_enabled()  # until the second one's quote
        finally:
            os.kill(proc.pid, signal.SIGCONT)

        wait_for(browser, "return document.querySelector('.turn:nth-child(2)[data-state=done]')")
        second = browser.find_elements(By.CSS_SELECTOR, ".turn")[1]
        assert second.find_elements(By.CSS_SELECTOR, ".evidence") and "500" in second.text
        assert second.find_elements(By.CSS_SELECTOR, ".sources")
        assert first.get_attribute("data-state") == "stopped"
        assert (
            send.is_enabled()
            and browser.execute_script("return document.body.dataset.state") == "idle"
        )
        # In the page's own record: the Ask button was freed by the quote itself, before the
        # first turn left "streaming".
        changes = browser.execute_script("return window.changes")
        quote = changes.index("quote")
        assert "send enabled" not in changes[:quote], changes
        assert changes[quote + 1] == "send enabled", changes
        assert changes.index("turn streaming -> stopped") > quote + 1, changes

        # The server saw the first client leave: its request logged and counted 499, and the
        # one answer slot came free for the second (the log line and the slot are written
        # just after the last byte: waited for).
        def chats():
            lines = [json.loads(x) for x in open(proc.log_path) if x.startswith("{")]
            return [e for e in lines if e.get("path") == "/v1/chat/completions"]

        def metrics():
            return httpx.get(f"{url}/metrics", timeout=10).text.splitlines()

        end = time.monotonic() + 10
        while (
            len(chats()) < 2 or "outpost_slots_busy 0" not in metrics()
        ) and time.monotonic() < end:
            time.sleep(0.1)
        assert sorted(e["status"] for e in chats()) == [200, 499], chats()
        shown = metrics()
        assert 'outpost_requests_total{route="/v1/chat/completions",status="499"} 1' in shown
        assert "outpost_slots_busy 0" in shown
