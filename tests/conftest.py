"""Shared fixtures: one book build per test session, reused by the book and browser tests."""

from __future__ import annotations

import contextlib

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_COMMAND = ["build", "-W", "-n", "--keep-going"]  # the README's / Makefile's flags
BUILD_TIMEOUT = 900  # seconds; the budget is 3 minutes, this only stops a hung build


@dataclass
class BookBuild:
    source: Path  # the book's source directory
    out: Path  # the --path-output directory
    returncode: int
    log: str
    seconds: float
    reused: bool = False  # an existing build given by BNLIB_BOOK_HTML, not built by this session
    docs: tuple[str, ...] = ()  # the _toc.yml documents as they were when the build started

    @property
    def html(self) -> Path:
        return self.out if self.reused else self.out / "_build" / "html"

    @property
    def warnings(self) -> list[str]:
        """Sphinx warnings and errors (``path: WARNING: ...``); kernel log lines are not Sphinx's."""
        return [line for line in self.log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL): ", line)]

    def pages(self) -> list[Path]:
        skip = {"_static", "_sources", "_images"}
        return sorted(p for p in self.html.rglob("*.html") if p.relative_to(self.html).parts[0] not in skip)


def jupyter_book_executable() -> str:
    candidate = Path(sys.executable).with_name("jupyter-book")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.skip("jupyter-book is not installed (pip install -r requirements.txt)")
    return found


def build_book(source: Path, out: Path) -> BookBuild:
    """``jupyter-book build <source> --path-output <out> -W -n --keep-going`` from an empty cache."""
    assert not (out / "_build").exists(), "the build must start from an empty execution cache"
    docs = tuple(toc_documents(source / "_toc.yml"))
    cmd = [jupyter_book_executable(), *BUILD_COMMAND[:1], str(source), "--path-output", str(out), *BUILD_COMMAND[1:]]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=source, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )
    seconds = time.perf_counter() - start
    return BookBuild(source, out, proc.returncode, proc.stdout + proc.stderr, seconds, docs=docs)


def toc_documents(toc_path: Path) -> list[str]:
    """Every document named in a jb-book ``_toc.yml`` (root first), without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    docs = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                docs.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", d) for d in docs]


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> BookBuild:
    """The whole book, built once per session from an empty cache into a temporary directory.

    To iterate on the site tests without rebuilding, point ``BNLIB_BOOK_HTML`` at an existing
    build (``BNLIB_BOOK_HTML=_build/html pytest tests/test_site_browser.py``); the tests of the
    build itself are then skipped.
    """
    existing = os.environ.get("BNLIB_BOOK_HTML")
    if existing:
        html = Path(existing).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"BNLIB_BOOK_HTML={existing}: no built site there (no index.html)")
        return BookBuild(ROOT, html, 0, "", 0.0, reused=True, docs=tuple(toc_documents(ROOT / "_toc.yml")))
    out = tmp_path_factory.mktemp("book")
    return build_book(ROOT, out)


@pytest.fixture(scope="session")
def template_book(tmp_path_factory) -> BookBuild:
    """A small book made of scripts/CHAPTER_TEMPLATE.md (as a chapter) and the references page.

    It proves the template's syntax builds with the book's real ``_config.yml``, and gives the
    browser tests a page with an interactive figure before the real chapters have one.
    """
    src = tmp_path_factory.mktemp("template_src")
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copy(ROOT / "references.bib", src / "references.bib")
    for folder in ("_ext", "_templates", "_static"):  # the local extension, layout and style
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "chapters").mkdir()
    shutil.copy(ROOT / "scripts" / "CHAPTER_TEMPLATE.md", src / "chapters" / "00_template.md")
    (src / "index.md").write_text("# Template book\n\nA test build of the chapter template.\n")
    (src / "references.md").write_text("(references)=\n# References\n\n```{bibliography}\n```\n")
    (src / "_toc.yml").write_text(
        "format: jb-book\nroot: index\nparts:\n  - caption: Template\n    chapters:\n"
        "      - file: chapters/00_template\n      - file: references\n"
    )
    out = tmp_path_factory.mktemp("template_out")
    return build_book(src, out)


@pytest.fixture(scope="session")
def check_links():
    """The scripts/check_links.py module."""
    return load_script("check_links")


# --- headless Chromium, shared by the browser tests ----------------------------------------------

CHROMIUM_INSTALL_HINT = "install it with: apt-get install chromium chromium-driver (Debian), as .ci/run does"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--hide-scrollbars",
]


def _which(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def chromium_driver(extra_flags=(), logging_prefs=None, page_load_strategy=None, prefix="bnlib-chromium-"):
    """A Selenium driver for Debian's headless Chromium, or ``pytest.skip`` saying how to install it."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -r requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    chromium = _which("chromium", "chromium-browser", "google-chrome")
    driver_path = _which("chromedriver")
    if chromium is None:
        pytest.skip(f"Chromium is not installed; {CHROMIUM_INSTALL_HINT}")
    if driver_path is None:
        pytest.skip(f"chromedriver is not installed; {CHROMIUM_INSTALL_HINT}")
    profile = tempfile.mkdtemp(prefix=prefix)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    if logging_prefs:
        options.set_capability("goog:loggingPrefs", logging_prefs)
    if page_load_strategy:
        options.page_load_strategy = page_load_strategy
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
