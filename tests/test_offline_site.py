"""The built site needs no network: every page, loaded in headless Chromium with the network off.

Two layers: a static scan of every built HTML page and stylesheet for resources fetched from
another host (scripts, stylesheets, images, fonts, CSS imports), and a real browser, offline,
that loads EVERY page and checks what a reader would see: the maths typeset by the MathJax
served with the site, every image decoded, and not one failed request.

The same pass weighs each page as a first-time visitor's browser fetches it (the browser cache
is off): the HTML and every file it loads, down to the fonts MathJax asks for, against the design's
budget of 3 MB per page with its assets.

Reuses the session's one book build (the ``book`` fixture in conftest.py). Needs Debian's
Chromium and chromedriver and ``selenium``; without them the browser tests are skipped, saying so.
"""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT, chromium_driver, load_script, toc_documents

REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)
CSS_URL = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)|url\(\s*['"]?([^'")]+)""", re.I)


# --- the static scan ---------------------------------------------------------------------------


class ResourceParser(HTMLParser):
    """Collects the URLs a page fetches by itself (not the links a reader may follow)."""

    FETCHED = {
        "script": ("src",), "img": ("src", "srcset"), "iframe": ("src",), "source": ("src", "srcset"),
        "video": ("src", "poster"), "audio": ("src",), "embed": ("src",), "object": ("data",),
        "input": ("src",),
    }
    NAVIGATION_RELS = {"canonical", "alternate", "index", "search", "next", "prev", "author", "license", "help"}

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self._style = False
        self.css: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and attrs.get("href"):
            rels = set((attrs.get("rel") or "").lower().split())
            if not rels or rels - self.NAVIGATION_RELS:
                self.urls.append((f"<link rel={attrs.get('rel')!r}>", attrs["href"]))
        for name in self.FETCHED.get(tag, ()):
            value = attrs.get(name)
            if value:
                for url in value.split(",") if name == "srcset" else [value]:
                    self.urls.append((f"<{tag} {name}>", url.strip().split(" ")[0]))
        if attrs.get("style"):
            self.css.append(attrs["style"])
        self._style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._style = False

    def handle_data(self, data):
        if self._style:
            self.css.append(data)


def remote_css_urls(css: str) -> list[str]:
    return [u for m in CSS_URL.finditer(css) for u in m.groups() if u and REMOTE.match(u)]


def test_no_page_or_stylesheet_loads_anything_from_another_host(book):
    assert book.returncode == 0, book.log[-3000:]
    problems = []
    for page in book.pages():
        parser = ResourceParser()
        parser.feed(page.read_text(encoding="utf-8"))
        name = page.relative_to(book.html).as_posix()
        problems += [f"{name}: {what} {url}" for what, url in parser.urls if REMOTE.match(url)]
        problems += [f"{name}: CSS url({url})" for css in parser.css for url in remote_css_urls(css)]
    for sheet in book.html.rglob("*.css"):
        problems += [f"{sheet.relative_to(book.html)}: {url}" for url in remote_css_urls(sheet.read_text(errors="replace"))]
    assert not problems, "resources from the network:\n" + "\n".join(problems[:40])


def test_mathjax_is_served_with_the_site(book):
    assert book.returncode == 0, book.log[-3000:]
    with_maths = [p for p in book.pages() if 'class="math' in p.read_text(encoding="utf-8")]
    assert with_maths, "no page with maths: is dollarmath enabled?"
    for page in with_maths:
        scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page.read_text(encoding="utf-8"), re.I)
        assert scripts, f"{page.name}: maths but no MathJax script"
        for src in scripts:
            assert not REMOTE.match(src), f"{page.name}: MathJax from {src}"
            assert (page.parent / src.split("?")[0]).resolve().is_file(), f"{page.name}: {src} is not in the build"


def test_the_static_scan_finds_remote_resources(tmp_path):
    parser = ResourceParser()
    parser.feed(
        '<link rel="stylesheet" href="https://cdn.example.org/a.css"><link rel="canonical" href="https://example.org/">'
        '<script src="//cdn.example.org/b.js"></script><img src="_images/ok.png"><img srcset="x.png 1x, https://e.org/y.png 2x">'
        '<style>@import url("https://fonts.example.org/c.css"); .x{background:url(local.png)}</style>'
        '<a href="https://example.org/">a link is not a resource</a>'
    )
    remote = [u for _, u in parser.urls if REMOTE.match(u)]
    assert remote == ["https://cdn.example.org/a.css", "//cdn.example.org/b.js", "https://e.org/y.png"]
    assert [u for css in parser.css for u in remote_css_urls(css)] == ["https://fonts.example.org/c.css"]


# --- the browser, offline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_browser():
    flags = ["--host-resolver-rules=MAP * ~NOTFOUND"]  # no name resolves: nothing can leave the machine
    with chromium_driver(flags, {"performance": "ALL", "browser": "ALL"}, prefix="bnlib-offline-") as driver:
        driver.set_script_timeout(30)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})  # a first visit
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        yield driver


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done("ok"), (e) => done("MathJax failed: " + e));
  } else if (Date.now() - start > 20000) {
    done("MathJax did not load");
  } else {
    setTimeout(poll, 50);
  }
})();
"""

# Text a reader sees outside code blocks and typeset maths: raw TeX delimiters must not be in it.
VISIBLE_PROSE = """
const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER", "MJX-ASSISTIVE-MML"]);
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
  acceptNode(node) {
    for (let el = node.parentElement; el; el = el.parentElement) {
      if (skip.has(el.tagName)) return NodeFilter.FILTER_REJECT;
    }
    return NodeFilter.FILTER_ACCEPT;
  }
});
const parts = [];
while (walker.nextNode()) parts.push(walker.currentNode.nodeValue);
return parts.join(" ");
"""

IMAGES_SETTLED = """
for (const img of document.images) { if (img.loading === "lazy") img.loading = "eager"; }
return Array.from(document.images).every((i) => i.complete);
"""

BROKEN_IMAGES = """
return Array.from(document.images)
  .filter((i) => !(i.complete && i.naturalWidth > 0))
  .map((i) => i.getAttribute("src").slice(0, 120));
"""


def network_events(driver):
    """(requests, failures) from the performance log since the last call."""
    requests, failures = {}, []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failures.append((params["requestId"], params.get("errorText", "")))
        elif message["method"] == "Network.responseReceived":
            status = params["response"].get("status", 0)
            if status >= 400:
                failures.append((params["requestId"], f"HTTP {status}"))
    return requests, [(requests.get(rid, "?"), why) for rid, why in failures]


def load(driver, page: Path):
    network_events(driver)  # drain the log
    driver.get(page.resolve().as_uri())
    deadline = time.time() + 20
    while time.time() < deadline:
        if driver.execute_script("return document.readyState") == "complete" and driver.execute_script(IMAGES_SETTLED):
            break
        time.sleep(0.05)


def test_every_page_works_offline(book, offline_browser):
    assert book.returncode == 0, book.log[-3000:]
    page_weight = load_script("page_weight")
    pages = book.pages()
    assert len(pages) >= len(toc_documents(ROOT / "_toc.yml"))
    problems, typeset, weights = [], 0, {}
    for page in pages:
        name = page.relative_to(book.html).as_posix()
        load(offline_browser, page)
        n_maths = offline_browser.execute_script("return document.querySelectorAll('.math').length")
        if n_maths:
            status = offline_browser.execute_async_script(WAIT_FOR_MATHJAX)
            if status != "ok":
                problems.append(f"{name}: {status}")
            untypeset = offline_browser.execute_script(
                "return Array.from(document.querySelectorAll('.math')).filter((m) => !m.querySelector('mjx-container')).length"
            )
            if untypeset:
                problems.append(f"{name}: {untypeset} of {n_maths} formulas not typeset")
            errors = offline_browser.execute_script(
                "return Array.from(document.querySelectorAll('mjx-merror')).map((e) => e.getAttribute('data-mjx-error') || e.textContent)"
            )
            if errors:
                problems.append(f"{name}: TeX errors {errors[:3]}")
            typeset += n_maths - untypeset
        prose = offline_browser.execute_script(VISIBLE_PROSE)
        raw = sorted({m for m in re.findall(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{", prose)})
        if raw:
            problems.append(f"{name}: raw TeX visible: {raw}")
        broken = offline_browser.execute_script(BROKEN_IMAGES)
        if broken:
            problems.append(f"{name}: images not loaded: {broken[:3]}")
        requests, failures = network_events(offline_browser)
        remote = sorted({u for u in requests.values() if re.match(r"https?:|wss?:", u)})
        if remote:
            problems.append(f"{name}: network requests: {remote[:5]}")
        failures = [(u, why) for u, why in failures if u not in remote]
        if failures:
            problems.append(f"{name}: failed requests: {failures[:5]}")
        weights[name] = page_weight.local_bytes(requests.values())
        if weights[name] > page_weight.BUDGET_BYTES:
            problems.append(f"{name}: {weights[name] / 1e6:.2f} MB with its assets, over the 3 MB budget")
    assert not problems, "\n".join(problems)
    assert typeset > 0, "no formula was typeset on any page"
    heaviest = max(weights, key=weights.get)
    print(f"{len(pages)} pages offline; {typeset} formulas typeset; each page with its assets "
          f"{min(weights.values()) / 1e6:.2f}-{weights[heaviest] / 1e6:.2f} MB (heaviest {heaviest})")


def test_the_offline_browser_reports_what_fails(offline_browser, tmp_path):
    """The checks above can fail: a page with a remote script, a missing image and raw TeX."""
    (tmp_path / "ok.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
        )
    )
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><script src="https://cdn.example.org/x.js"></script></head><body>'
        '<p>raw \\(x^2\\) here</p><img src="ok.png"><img src="missing.png"></body></html>'
    )
    load(offline_browser, page)
    requests, failures = network_events(offline_browser)
    assert "https://cdn.example.org/x.js" in requests.values()
    assert any(u.endswith("missing.png") for u, _ in failures)
    assert offline_browser.execute_script(BROKEN_IMAGES) == ["missing.png"]
    assert "\\(" in offline_browser.execute_script(VISIBLE_PROSE)


def test_page_weight_counts_each_local_file_once(tmp_path):
    page_weight = load_script("page_weight")
    script, sheet = tmp_path / "a.js", tmp_path / "b b.css"
    script.write_bytes(b"x" * 10)
    sheet.write_bytes(b"y" * 5)
    urls = [script.as_uri(), script.as_uri() + "?v=1", sheet.as_uri(), "https://example.org/c.js", "data:,z"]
    assert page_weight.local_bytes(urls) == 15
