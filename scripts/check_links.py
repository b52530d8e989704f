#!/usr/bin/env python3
"""Check the built website's internal links offline.

Every internal ``<a href>``, ``<area href>``, ``<link href>``, ``<img src>``,
``<script src>``, ``<source src>``, ``<iframe src>`` and ``<video/audio src>``
of every HTML page under the given directory must resolve to a file inside that
directory, and every ``#anchor`` into an HTML page must name an element ``id``
(or an ``<a name>``) on that page. External ``http(s)`` URLs are listed, never
fetched (Sphinx's own ``linkcheck`` needs the network); external *resources*
(scripts, stylesheets, images loaded from another host) are listed separately,
because the page needs the network to load them.

Usage::

    python scripts/check_links.py _build/html            # exit status 1 when something is broken
    python scripts/check_links.py _build/html --external # also list external URLs

From Python::

    from check_links import check_site
    report = check_site("_build/html")
    assert report.ok, report.format()
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# (tag, attribute) pairs that reference another file.
_LINK_ATTRS = {
    ("a", "href"),
    ("area", "href"),
    ("link", "href"),
    ("img", "src"),
    ("script", "src"),
    ("source", "src"),
    ("iframe", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
}
# Navigation targets (a broken one is a "link"); everything else is a resource.
_NAVIGATION_TAGS = {"a", "area"}
_NOT_PAGES = {"_static", "_sources", "_images"}
_IGNORED_SCHEMES = {"mailto", "tel", "javascript", "data", "about", "blob"}


@dataclass(frozen=True)
class Problem:
    page: str  # path of the page, relative to the site root
    kind: str  # "link", "anchor" or "resource"
    target: str  # the href/src as written
    reason: str

    def __str__(self) -> str:
        return f"{self.page}: broken {self.kind} {self.target!r} ({self.reason})"


@dataclass
class Report:
    root: Path
    pages: int = 0
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    external_links: dict[str, set[str]] = field(default_factory=dict)  # url -> pages
    external_resources: dict[str, set[str]] = field(default_factory=dict)  # url -> pages

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, external: bool = False) -> str:
        lines = [
            f"{self.root}: {self.pages} pages, {self.checked} internal references checked, "
            f"{len(self.problems)} broken, {len(self.external_links)} external links, "
            f"{len(self.external_resources)} external resources"
        ]
        lines += [f"  {p}" for p in self.problems]
        if self.external_resources:
            lines.append("external resources (the page needs the network for these):")
            for url, pages in sorted(self.external_resources.items()):
                lines.append(f"  {url}  ({len(pages)} pages)")
        if external and self.external_links:
            lines.append("external links (not fetched):")
            for url, pages in sorted(self.external_links.items()):
                lines.append(f"  {url}  ({len(pages)} pages)")
        return "\n".join(lines)


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag, url)
        self.base: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "base" and attrs.get("href"):
            self.base = attrs["href"]
        for t, attr in _LINK_ATTRS:
            if tag == t and attrs.get(attr) is not None:
                self.refs.append((tag, attrs[attr].strip()))

    handle_startendtag = handle_starttag


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def check_site(root: str | os.PathLike) -> Report:
    """Check every ``*.html`` under ``root``; return a :class:`Report`."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory (build the book first)")
    report = Report(root=root)
    # _static holds the theme's Jinja templates (*.html that are not pages); _sources, copies.
    pages = sorted(
        p for p in root.rglob("*.html") if p.relative_to(root).parts[0] not in _NOT_PAGES
    )
    parsed: dict[Path, _PageParser] = {}

    def page_ids(path: Path) -> set[str]:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path].ids

    for page in pages:
        report.pages += 1
        rel_page = page.relative_to(root).as_posix()
        info = parsed.get(page) or _parse(page)
        parsed[page] = info
        for tag, url in info.refs:
            kind = "link" if tag in _NAVIGATION_TAGS else "resource"
            if not url:
                continue
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in _IGNORED_SCHEMES:
                continue
            if scheme in ("http", "https", "ftp") or url.startswith("//"):
                bucket = report.external_links if kind == "link" else report.external_resources
                bucket.setdefault(url, set()).add(rel_page)
                continue
            if scheme:  # some other scheme (e.g. file:) is not portable
                report.problems.append(Problem(rel_page, kind, url, f"unsupported scheme {scheme!r}"))
                continue
            report.checked += 1
            path_part = unquote(parts.path)
            if path_part.startswith("/"):
                report.problems.append(
                    Problem(rel_page, kind, url, "absolute path: breaks when the site is not served from /")
                )
                continue
            target = (page.parent / path_part).resolve() if path_part else page
            try:
                target.relative_to(root)
            except ValueError:
                report.problems.append(Problem(rel_page, kind, url, "points outside the site"))
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                report.problems.append(Problem(rel_page, kind, url, "no such file"))
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                if fragment not in page_ids(target):
                    report.problems.append(
                        Problem(rel_page, "anchor", url, f"no id {fragment!r} in {target.relative_to(root).as_posix()}")
                    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html_dir", nargs="?", default="_build/html", help="the built site (default: _build/html)")
    ap.add_argument("--external", action="store_true", help="also list external links (never fetched)")
    args = ap.parse_args(argv)
    try:
        report = check_site(args.html_dir)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report.format(external=args.external))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
