#!/usr/bin/env python3
"""Weigh every page of the built site as a first-time visitor's browser loads it.

Each page is opened in headless Chromium with the cache and the network off. Its weight is the
size on disk of the page and of every local file the browser asked for while showing it:
stylesheets, scripts, images, the web fonts the icons and MathJax use, MathJax's components.
The design's budget is 3 MB per page with its assets.

    python scripts/page_weight.py [_build/html]

Needs Debian's ``chromium`` and ``chromedriver`` and the ``selenium`` package.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

BUDGET_BYTES = 3_000_000
SKIP = {"_static", "_sources", "_images"}

SETTLED = """
for (const img of document.images) { if (img.loading === "lazy") img.loading = "eager"; }
return document.readyState === "complete" && Array.from(document.images).every((i) => i.complete);
"""

TYPESET = """
const done = arguments[arguments.length - 1];
if (!document.querySelector(".math")) { done("no maths"); return; }
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => document.fonts.ready).then(() => done("ok"), (e) => done(String(e)));
  } else if (Date.now() - start > 20000) {
    done("MathJax did not load");
  } else {
    setTimeout(poll, 50);
  }
})();
"""


def local_bytes(urls) -> int:
    """Bytes on disk of the distinct local files among ``urls``."""
    paths = {Path(unquote(urlparse(u).path)) for u in urls if u.startswith("file://")}
    return sum(p.stat().st_size for p in paths if p.is_file())


def requested_urls(driver) -> list[str]:
    """URLs the browser asked for since the last call (from the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def open_browser():
    """Headless Chromium with the cache off and no network: every page loads as on a first visit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="bnlib-weigh-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(30)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    return driver, profile


def weigh(html: Path) -> list[tuple[str, int, int]]:
    """``(page, total bytes, bytes of the page's own HTML and images)`` for every built page."""
    html = Path(html).resolve()
    pages = sorted(p for p in html.rglob("*.html") if p.relative_to(html).parts[0] not in SKIP)
    driver, profile = open_browser()
    rows = []
    try:
        for page in pages:
            requested_urls(driver)  # drain
            driver.get(page.as_uri())
            deadline = time.time() + 20
            while time.time() < deadline and not driver.execute_script(SETTLED):
                time.sleep(0.05)
            driver.execute_async_script(TYPESET)
            urls = requested_urls(driver)
            own = [u for u in urls if u == page.as_uri() or "/_images/" in u]
            rows.append((page.relative_to(html).as_posix(), local_bytes(urls), local_bytes(own)))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return rows


def main(argv=None) -> int:
    html = Path((argv or sys.argv[1:] or ["_build/html"])[0])
    rows = weigh(html)
    print(f"{'page':45s} {'with assets':>12s} {'own':>8s}   (budget {BUDGET_BYTES / 1e6:.0f} MB)")
    for name, total, own in rows:
        print(f"{name:45s} {total / 1e6:9.2f} MB {own / 1e6:5.2f} MB   {'ok' if total <= BUDGET_BYTES else 'OVER'}")
    return 0 if all(total <= BUDGET_BYTES for _, total, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
