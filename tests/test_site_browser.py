"""The built website in a real browser: headless Chromium driven through Selenium.

Needs Debian's Chromium and its driver (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them) and ``selenium`` from PyPI. Without them these tests are skipped, saying so.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from conftest import chromium_driver


MARKER = 'class="bnlib-interactive"'

# Console errors that are not ours and not about the page working offline (none left).
KNOWN_THIRD_PARTY_ERRORS: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def browser():
    # offline: do not wait for CDN resources that never come
    with chromium_driver(logging_prefs={"browser": "ALL"}, page_load_strategy="eager") as driver:
        yield driver


def open_page(driver, path):
    driver.get(path.resolve().as_uri())
    deadline = time.time() + 10
    while time.time() < deadline:
        ready = driver.execute_script(
            "return document.readyState !== 'loading' && "
            "Array.from(document.images).every(function(i){return i.complete;});"
        )
        if ready:
            return
        time.sleep(0.05)


def png_array(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def our_js_errors(driver) -> list[str]:
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE" or entry.get("source") != "javascript":
            continue
        if any(known in entry["message"] for known in KNOWN_THIRD_PARTY_ERRORS):
            continue
        errors.append(entry["message"])
    return errors


@pytest.fixture(scope="session")
def interactive_pages(request, book):
    """Built pages that contain a static interactive figure: the book's, else the template's."""
    pages = [p for p in book.pages() if MARKER in p.read_text(encoding="utf-8")]
    if not pages:
        template = request.getfixturevalue("template_book")
        assert template.returncode == 0, template.log[-3000:]
        pages = [p for p in template.pages() if MARKER in p.read_text(encoding="utf-8")]
    assert pages, "no page with an interactive figure to test"
    return pages


def test_intro_page_renders_to_a_non_blank_screenshot(browser, book):
    if not (book.html / "index.html").is_file():
        pytest.fail(f"the book build wrote no site (exit {book.returncode}):\n{book.log[-3000:]}")
    root = book.docs[0]
    open_page(browser, book.html / "index.html")
    deadline = time.time() + 10  # index.html redirects to the root document
    while not browser.current_url.endswith(f"/{root}.html") and time.time() < deadline:
        time.sleep(0.05)
    assert browser.current_url.endswith(f"/{root}.html"), browser.current_url
    open_page(browser, book.html / f"{root}.html")
    assert browser.find_element("css selector", "article h1").text.strip()
    pixels = png_array(browser.get_screenshot_as_png())
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
    background = np.median(pixels.reshape(-1, 3), axis=0)
    inked = np.abs(pixels - background).sum(axis=2) > 60
    assert inked.mean() > 0.01, f"only {inked.mean():.2%} of the screenshot differs from the background"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert not our_js_errors(browser)


@pytest.fixture(scope="module")
def site_url(book):
    """The built site served over HTTP on localhost, as a web host would serve it."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(book.html))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def wait_until_settled(driver, seconds=10.0):
    """Wait for the page's scripts: the document complete and MathJax done typesetting."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        done = driver.execute_script(
            "return document.readyState === 'complete' && (!window.MathJax || !MathJax.startup"
            " || !MathJax.startup.promise || window.__bnlibTypeset === true);"
        )
        if done:
            return
        driver.execute_script(
            "if (window.MathJax && MathJax.startup && MathJax.startup.promise && !window.__bnlibWait)"
            " { window.__bnlibWait = true;"
            " MathJax.startup.promise.then(function () { window.__bnlibTypeset = true; }); }"
        )
        time.sleep(0.1)


def test_every_page_loads_without_a_console_error(browser, book, site_url):
    # Served over HTTP as a host would serve it, so that missing files (a favicon) show as errors.
    problems = []
    browser.get_log("browser")  # drain
    for page in book.pages():
        name = page.relative_to(book.html).as_posix()
        browser.get(f"{site_url}/{name}")
        wait_until_settled(browser)
        for entry in browser.get_log("browser"):
            if entry["level"] == "SEVERE" and not any(k in entry["message"] for k in KNOWN_THIRD_PARTY_ERRORS):
                problems.append(f"{name}: {entry['message']}")
    assert not problems, "console errors:\n" + "\n".join(problems)


def test_every_page_shows_the_book_title_above_the_navigation(browser, book):
    from selenium.webdriver.common.by import By

    chapter = next(p for p in book.pages() if p.parent.name == "chapters")
    open_page(browser, chapter)
    for width in (1280, 400):
        browser.set_window_size(width, 1000)
        open_page(browser, chapter)
        titles = [t for t in browser.find_elements(By.CSS_SELECTOR, ".navbar-brand") if t.is_displayed()]
        assert len(titles) == 1, f"{width} px: {len(titles)} visible book titles"
        assert titles[0].text.strip() == book_title(book), f"{width} px: {titles[0].text!r}"
        assert not browser.find_elements(By.CSS_SELECTOR, "img.logo__image"), "a broken logo image"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width, "page wider than the window"
        if width == 1280:  # the navigation is on screen beside the article
            nav = browser.find_element(By.CSS_SELECTOR, ".bd-sidebar-primary nav.bd-links")
            assert titles[0].rect["y"] + titles[0].rect["height"] <= nav.rect["y"], "the title is not above the navigation"
    browser.set_window_size(1280, 1000)


def book_title(book):
    import yaml

    return yaml.safe_load((book.source / "_config.yml").read_text())["title"]


OVERFLOWING = """
const article = document.querySelector('article.bd-article');
const limit = article.getBoundingClientRect().right + 1;
const scrolls = (e) => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
const inScroller = (e) => { for (let p = e.parentElement; p && p !== article; p = p.parentElement)
  { if (scrolls(p) && p.getBoundingClientRect().right <= limit) return true; } return false; };
const out = [];
for (const e of article.querySelectorAll(arguments[0])) {
  if (e.getBoundingClientRect().width === 0) continue;  // hidden (a closed dropdown)
  const right = e.getBoundingClientRect().right;
  const clipped = scrolls(e) ? e.getBoundingClientRect().right > limit : right > limit && !inScroller(e);
  const wider = arguments[1] && e.scrollWidth > e.clientWidth + 1;
  if (clipped || wider) out.push((e.textContent || '').trim().slice(0, 70));
}
return out;
"""


def _chapter_pages(book):
    return [p for p in book.pages() if p.parent.name == "chapters" or p.stem == "instructors"]


def test_formulas_fit_or_scroll_in_a_narrow_window(browser, book):
    # At 400 px (a phone held upright) a formula wider than the column must scroll, not be cut off.
    browser.set_window_size(400, 900)
    try:
        problems = []
        for page in _chapter_pages(book):
            open_page(browser, page)
            wait_until_settled(browser)
            for text in browser.execute_script(OVERFLOWING, "mjx-container", False):
                problems.append(f"{page.name}: {text}")
        assert not problems, "formulas cut off at 400 px:\n" + "\n".join(problems)
    finally:
        browser.set_window_size(1280, 1000)


def test_printed_outputs_fit_the_column_of_a_wide_window(browser, book):
    browser.set_window_size(1280, 1000)
    problems = []
    for page in _chapter_pages(book):
        open_page(browser, page)
        for text in browser.execute_script(OVERFLOWING, "div.cell_output pre, div.highlight-text pre", True):
            problems.append(f"{page.name}: {text}")
    assert not problems, "printed outputs wider than the column at 1280 px:\n" + "\n".join(problems)


def test_search_from_a_chapter_page_finds_results(browser, book, site_url):
    # Pages do not load the search index (_templates/layout.html): the search box must still
    # lead to search.html, which loads it and lists the pages that match.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    chapter = next(p for p in book.pages() if p.parent.name == "chapters")
    assert "searchindex.js" not in chapter.read_text(encoding="utf-8")
    browser.get_log("browser")  # drain
    browser.get(f"{site_url}/{chapter.relative_to(book.html).as_posix()}")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "k")
    box = browser.switch_to.active_element
    assert box.get_attribute("name") == "q", "Ctrl+K focuses the search box"
    box.send_keys("whitening", Keys.ENTER)
    deadline = time.time() + 15
    results = []
    while time.time() < deadline and not results:
        time.sleep(0.1)
        results = browser.find_elements(By.CSS_SELECTOR, "#search-results li")
    assert "search.html?q=whitening" in browser.current_url
    assert results, "the search page lists no result for 'whitening'"
    time.sleep(1)  # the result summaries are fetched after the list appears
    assert not our_js_errors(browser)


VISIBLE_ICONS = """
return Array.from(document.querySelectorAll('.fa-solid, .fas, .fab, .fa-brands'))
  .filter((i) => i.getBoundingClientRect().width > 0)
  .map((i) => { const s = getComputedStyle(i, '::before'); return [i.className, s.fontFamily, s.content]; });
"""


def test_theme_icons_are_drawn_without_the_font_awesome_script(browser, book):
    # The icons come from the Font Awesome web fonts named in the theme's stylesheet.
    chapter = next(p for p in book.pages() if p.parent.name == "chapters")
    assert "fontawesome.js" not in chapter.read_text(encoding="utf-8")
    open_page(browser, chapter)
    icons = browser.execute_script(VISIBLE_ICONS)
    assert len(icons) >= 3, icons
    for name, family, content in icons:
        assert "Font Awesome" in family and content not in ("", "none", "normal"), (name, family, content)
    deadline = time.time() + 10
    while time.time() < deadline and not browser.execute_script(
        "return document.fonts.check('900 16px \"Font Awesome 6 Free\"')"
    ):
        time.sleep(0.1)
    assert browser.execute_script("return document.fonts.check('900 16px \"Font Awesome 6 Free\"')")


def _move(driver, control):
    """Change one control with the keyboard, as a reader would; return a key that undoes it."""
    from selenium.webdriver.common.keys import Keys

    kind = control.get_attribute("type") if control.tag_name == "input" else "select"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", control)
    assert driver.switch_to.active_element == control, "the control takes keyboard focus"
    if kind == "range":
        at_max = control.get_attribute("value") == control.get_attribute("max")
        forward, back = (Keys.ARROW_LEFT, Keys.ARROW_RIGHT) if at_max else (Keys.ARROW_RIGHT, Keys.ARROW_LEFT)
    elif kind == "checkbox":
        forward = back = Keys.SPACE
    else:
        at_last = driver.execute_script("return arguments[0].selectedIndex === arguments[0].options.length - 1;", control)
        forward, back = (Keys.ARROW_UP, Keys.ARROW_DOWN) if at_last else (Keys.ARROW_DOWN, Keys.ARROW_UP)
    control.send_keys(forward)
    return back


def test_static_interactive_figures_respond_to_the_keyboard(browser, interactive_pages):
    checked = 0
    for page in interactive_pages:
        open_page(browser, page)
        figures = browser.find_elements("css selector", "div.bnlib-interactive")
        assert figures, page
        for figure in figures:
            assert figure.get_attribute("data-ready") == "1", f"{page.name}: the figure's script did not run"
            img = figure.find_element("css selector", "img.bnlib-frame")
            controls = [
                c
                for c in figure.find_elements("css selector", "input, select")
                if c.is_enabled()
            ]
            assert controls, f"{page.name}: an interactive figure without a usable control"
            for control in controls:
                cid = control.get_attribute("id")
                label = figure.find_element("css selector", f'label[for="{cid}"]')
                assert label.text.strip(), "every control is labelled"
                readout = figure.find_element("css selector", f'output[for="{cid}"]')
                frame0, src0, text0 = figure.get_attribute("data-frame"), img.get_attribute("src"), readout.text
                shot0 = png_array(img.screenshot_as_png)

                back = _move(browser, control)

                frame1, src1, text1 = figure.get_attribute("data-frame"), img.get_attribute("src"), readout.text
                assert frame1 != frame0, f"{page.name} #{cid}: the frame index did not change"
                assert src1 != src0, f"{page.name} #{cid}: the picture did not change"
                assert text1 != text0, f"{page.name} #{cid}: the value readout did not change"
                shot1 = png_array(img.screenshot_as_png)
                assert shot0.shape != shot1.shape or np.abs(shot0 - shot1).sum() > 0, "no visible change"

                control.send_keys(back)
                assert figure.get_attribute("data-frame") == frame0, "moving back restores the frame"
                assert img.get_attribute("src") == src0
                checked += 1
        assert not our_js_errors(browser), f"{page.name}: JavaScript errors"
    assert checked >= 1


# --- the live rendering, in a real JupyterLab (runs only where JupyterLab is installed) ----------

LIVE_CELL = """import numpy as np
from bnlib import viz
def draw(fig, a, dashed):
    ax = fig.subplots()
    x = np.linspace(-3, 3, 200)
    ax.plot(x, np.tanh(a * x), ls='--' if dashed else '-')
h = viz.interactive_figure(draw, {'a': [0.5, 1.0, 2.0, 4.0], 'dashed': [False, True]})"""


@pytest.fixture
def jupyterlab_server(tmp_path):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (make lab installs it)")
    import secrets
    import socket
    import subprocess
    import sys
    import urllib.request

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(LIVE_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "live.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("JupyterLab did not start")
                time.sleep(0.3)
        yield f"{base}/lab/tree/live.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_for(driver, css, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = driver.find_elements("css selector", css)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"nothing matches {css!r} after {timeout:.0f} s")


def _wait_change(read, old, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if read() != old:
            return True
        time.sleep(0.02)
    return False


def test_live_widget_redraws_in_jupyterlab(browser, jupyterlab_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(jupyterlab_server)
    _wait_for(browser, ".jp-Notebook .jp-CodeCell .cm-content")
    time.sleep(3)  # let the notebook settle (it re-renders) and the kernel connect
    _wait_for(browser, ".jp-Notebook .jp-CodeCell .cm-content")[0].click()
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    img = _wait_for(browser, ".jp-OutputArea-output .widget-image")[0]
    # the front end chose the live widget, not the static frames of the same output
    assert not browser.find_elements("css selector", ".jp-OutputArea-output .bnlib-interactive")
    assert img.size["width"] == 640, "shown at its natural size"
    src = img.get_attribute("src")
    handle = _wait_for(browser, ".jp-OutputArea-output .noUi-handle")[0]
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    assert _wait_change(lambda: img.get_attribute("src"), src), "moving the slider did not redraw"
    src = img.get_attribute("src")
    browser.find_element("css selector", ".jp-OutputArea-output input[type=checkbox]").click()
    assert _wait_change(lambda: img.get_attribute("src"), src), "the checkbox did not redraw"
