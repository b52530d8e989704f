"""The notebook edition in a real front end: JupyterLab (from PyPI) in headless Chromium.

A JupyterLab server is started on a free localhost port with one launch notebook and one student
notebook; Chromium opens each, and the text JupyterLab renders must show the numbers the website
shows (no ``{glue`` placeholder), the figure captions, and neither the install cell's code nor a
solution (both collapsed). A chapter's ``.md`` source opened there as a notebook (jupytext), with its
kernel started and saved with Ctrl+S, keeps every byte. Skipped, with the reason, only where
Chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import jupytext
import pytest

from conftest import ROOT, chromium_driver, load_script

CHAPTER = ROOT / "chapters" / "04_batch_normalization.md"
TOKEN = "bnlib-test-token"
STARTUP_TIMEOUT = 60  # seconds; JupyterLab starts in a few seconds when the machine is idle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_dir(path):
    """JupyterLab user settings: every cell rendered (no windowing), no news or update checks."""
    for name, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
        # a chapter .md opens as a notebook through jupytext, as "Open With > Jupytext Notebook" does
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {
            "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}},
    }.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(json.dumps(value))
    return path


@pytest.fixture(scope="module")
def website(book):
    """The session's book build (make test builds it once for all tests); its execution cache
    gives the student notebook its numbers, its chapter page the numbers to look for."""
    assert book.returncode == 0, book.log[-3000:]
    mp = pytest.MonkeyPatch()
    mp.setenv("BNLIB_JUPYTER_CACHE", str(book.html.parent / ".jupyter_cache"))
    yield book
    mp.undo()


@pytest.fixture(scope="module")
def lab(website, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a folder with chapter 4's two notebooks."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(CHAPTER.with_suffix(".ipynb"), root / "launch.ipynb")
    make_student = load_script("make_student")
    import nbformat

    nbformat.write(make_student.student_notebook(CHAPTER), root / "student.ipynb")
    (root / "chapters").mkdir()
    shutil.copy(CHAPTER, root / "chapters" / CHAPTER.name)  # a source, with the repository's jupytext.toml
    shutil.copy(ROOT / "jupytext.toml", root / "jupytext.toml")
    home = tmp_path_factory.mktemp("lab_home")
    port = free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings_dir(home / "settings")),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0"]
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with chromium_driver(extra_flags=["--window-size=1280,2000"], prefix="bnlib-lab-") as driver:
        yield driver


def expected_numbers(chapter, website):
    """The numbers the website shows in the chapter's prose outside the solutions, as formatted there."""
    make_notebooks = load_script("make_notebooks")
    glue = make_notebooks.chapter_glue(chapter)
    text = re.sub(r"^```\{solution-start\}.*?^```\{solution-end\}\n```", "", chapter.read_text(), flags=re.M | re.S)
    prose = "\n".join(c.source for c in jupytext.reads(text, fmt="md:myst").cells if c.cell_type == "markdown")
    values = []
    for content in re.findall(r"\{glue:text\}`([^`]+)`", prose):
        key, _, spec = content.rpartition(":") if ":" in content else (content, "", "s")
        values.append(make_notebooks.format_plain_text(glue[key]["text/plain"], spec))
    page = (website.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf-8")
    on_site = set(re.findall(r'<span class="pasted-text">([^<]*)</span>', page))
    assert set(values) <= on_site, f"not on the website: {sorted(set(values) - on_site)[:5]}"
    return values


def workspace_url(url, path):
    """``path`` opened alone, in a fresh workspace (no tab restored from an earlier test)."""
    workspace = re.sub(r"\W", "-", path)
    return f"{url}/lab/workspaces/{workspace}/tree/{path}?token={TOKEN}&reset"


def rendered_text(driver, url, name, timeout=45):
    """The text JupyterLab shows for notebook ``name`` once its markdown is rendered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(workspace_url(url, name))
    selector = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"

    def ready(d):  # rendered by JupyterLab's markdown renderer or jupyterlab-myst's
        cells = d.find_elements(By.CSS_SELECTOR, f"{selector} .jp-MarkdownCell.jp-mod-rendered")
        shown = d.execute_script("var n = document.querySelector(arguments[0]); return n ? n.innerText : ''", selector)
        return len(cells) > 20 and "4.2. Algorithm 1, one step at a time" in shown and "Figure 4.4." in shown

    WebDriverWait(driver, timeout).until(ready)
    time.sleep(1.0)  # let the last cells and the maths settle
    everything = driver.execute_script("return document.querySelector(arguments[0]).innerText", selector)
    prose = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' .jp-MarkdownCell'), c => c.innerText).join('\\n')",
        selector)
    return everything, prose


def check_page(shown, numbers, edition):
    text, prose = shown
    assert "{glue" not in prose and "{numref" not in prose and "{cite" not in prose, f"{edition}: MyST shows as raw text"
    missing = sorted({n for n in numbers if n not in prose})
    assert not missing, f"{edition} in JupyterLab lacks the website's numbers {missing[:10]}"
    assert "Figure 4.1." in text and "4.2. Algorithm 1, one step at a time" in text
    assert "Ioffe and Szegedy (2015)" in text
    assert "REPOSITORY =" not in text, f"{edition}: the install cell's code is not collapsed"


def test_launch_notebook_in_jupyterlab(browser, lab, website):
    numbers = expected_numbers(CHAPTER, website)
    assert len(numbers) >= 20
    shown = rendered_text(browser, lab[0], "launch.ipynb")
    check_page(shown, numbers, "the launch notebook")
    text = shown[0]
    assert "Solutions" in text and "Exercise 4.1" in text
    assert "tuple(range(2, x.ndim))" not in text, "a solution's code shows before the reader expands it"


def test_student_notebook_in_jupyterlab(browser, lab, website):
    shown = rendered_text(browser, lab[0], "student.ipynb")
    check_page(shown, expected_numbers(CHAPTER, website), "the student notebook")
    text = shown[0]
    assert "Exercise 4.1" in text and "Solution" not in text


def test_saving_a_chapter_source_in_jupyterlab_changes_no_byte(browser, lab):
    """The chapter's .md opened as a notebook (jupytext), its kernel started, saved with Ctrl+S."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = lab
    source = root / "chapters" / CHAPTER.name
    before, mtime = source.read_bytes(), source.stat().st_mtime_ns
    browser.get(workspace_url(url, f"chapters/{CHAPTER.name}"))
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"

    def kernel_idle(d):
        shown = d.execute_script("var n = document.querySelector(arguments[0]); return n ? n.innerText : ''", panel)
        status = d.execute_script("return document.body.innerText")
        return "Batch Normalization" in shown and "Python 3 (ipykernel) | Idle" in status

    WebDriverWait(browser, 45).until(kernel_idle)
    browser.find_element(By.CSS_SELECTOR, f"{panel} .jp-Notebook").click()
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
    WebDriverWait(browser, 30).until(lambda d: source.stat().st_mtime_ns != mtime)
    time.sleep(0.5)
    assert source.read_bytes() == before, "saving the chapter in JupyterLab rewrote it (run `make notebooks`)"
    assert sorted(p.name for p in (root / "chapters").iterdir() if not p.name.startswith(".")) == [CHAPTER.name]
