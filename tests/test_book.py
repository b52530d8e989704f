"""The book builds with zero warnings from an empty cache, and its pages hold together offline.

One build per session (the ``book`` fixture in conftest.py) serves every test here and the
browser tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

MARKER = 'class="bnlib-interactive"'
PAGE_BUDGET_BYTES = 3_000_000  # design section 7: one chapter page with its assets


def page_assets(page: Path, html_root: Path) -> list[Path]:
    """The files the page loads itself (images); not the theme's shared _static, not _sources downloads."""
    text = page.read_text(encoding="utf-8")
    files = set()
    for url in re.findall(r'(?:src|href)="([^"#?]+)', text):
        if "://" in url or url.startswith(("data:", "mailto:", "//")):
            continue
        path = (page.parent / url).resolve()
        parts = path.relative_to(html_root.resolve()).parts
        if path.is_file() and not {"_static", "_sources"} & set(parts) and path.suffix != ".html":
            files.add(path)
    return sorted(files)


# --- the real book ------------------------------------------------------------------------


def test_book_builds_with_zero_warnings(book):
    if book.reused:
        pytest.skip("BNLIB_BOOK_HTML is set: testing an existing build, not building")
    assert book.returncode == 0, f"jupyter-book build failed:\n{book.log[-5000:]}"
    assert not book.warnings, "build warnings:\n" + "\n".join(book.warnings)
    assert re.search(r"build succeeded\.", book.log), "Sphinx did not report a clean build"
    print(f"book built from an empty cache in {book.seconds:.1f} s")


def test_build_log_has_no_warning_line_at_all(book):
    # Stricter than Sphinx's -W: kernel logs too ("[IPKernelApp] WARNING | Kernel is running
    # over TCP without encryption", once per executed chapter, before _ext/bnlib_site.py).
    if book.reused:
        pytest.skip("BNLIB_BOOK_HTML is set: testing an existing build, not building")
    alarming = [line for line in book.log.splitlines() if re.search(r"\bWARNING\b|without encryption", line)]
    assert not alarming, "the build log warns:\n" + "\n".join(alarming[:20])


def test_every_toc_document_has_a_page(book):
    docs = book.docs
    assert docs[0] == "intro"
    missing = [d for d in docs if not (book.html / f"{d}.html").is_file()]
    assert not missing, f"no HTML page for {missing}"
    assert (book.html / "index.html").is_file()


def test_only_toc_documents_are_built(book):
    docs = {f"{d}.html" for d in book.docs}
    extra = {p.relative_to(book.html).as_posix() for p in book.pages()} - docs - {"index.html", "genindex.html", "search.html"}
    assert not extra, f"pages not in _toc.yml were built: {sorted(extra)}"


def test_no_broken_internal_links_anchors_or_images(book, check_links):
    report = check_links.check_site(book.html)
    assert report.pages >= len(book.docs)
    assert report.checked > 0
    assert report.ok, report.format()


def test_site_loads_no_widget_javascript_from_a_cdn(book):
    for page in book.pages():
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(book.html)
        assert "@jupyter-widgets/html-manager" not in text, f"{name} loads ipywidgets from a CDN"
        assert "require.min.js" not in text, f"{name} loads RequireJS from a CDN"
        # the live widget view is never rendered into the static page
        assert 'type="application/vnd.jupyter.widget-view+json"' not in text, name


def test_interactive_figures_are_static_and_unique(book):
    for page in book.pages():
        text = page.read_text(encoding="utf-8")
        check_static_interactive_figures(text, page.relative_to(book.html).as_posix())


def test_chapter_pages_stay_within_the_size_budget(book):
    for page in book.pages():
        size = page.stat().st_size + sum(f.stat().st_size for f in page_assets(page, book.html))
        assert size <= PAGE_BUDGET_BYTES, f"{page.name}: {size / 1e6:.2f} MB with its images"


def check_static_interactive_figures(text: str, name: str) -> int:
    """Every static interactive figure on a page: unique id, all frames present, exactly once."""
    ids = re.findall(r'<div class="bnlib-interactive" id="([^"]+)" data-frames="(\d+)"', text)
    assert len(ids) == text.count(MARKER), f"{name}: malformed interactive figure"
    assert len({i for i, _ in ids}) == len(ids), f"{name}: two interactive figures share an id (rendered twice?)"
    for uid, n in ids:
        block = text[text.index(f'id="{uid}"'):]
        frames = json.loads(re.search(r'class="bnlib-frames">(.*?)</script>', block).group(1))
        assert len(frames) == int(n), f"{name}: {uid} has {len(frames)} frames, expected {n}"
        assert sum(f is None for f in frames) == 1  # the default frame lives in the <img>
    return len(ids)


# --- the chapter template ------------------------------------------------------------------


def test_chapter_template_builds_with_zero_warnings(template_book):
    assert template_book.returncode == 0, f"template build failed:\n{template_book.log[-5000:]}"
    assert not template_book.warnings, "\n".join(template_book.warnings)


def test_chapter_template_renders_every_construct(template_book):
    page = template_book.html / "chapters" / "00_template.html"
    text = page.read_text(encoding="utf-8")
    assert check_static_interactive_figures(text, page.name) == 1
    assert 'id="tpl-fig-sigmoid"' in text and 'id="tpl-fig-interactive"' in text  # named figures
    assert re.search(r"Fig\. 2", text)  # the interactive figure is numbered
    assert "0.0066" in text and "0.25" in text  # glued numbers
    assert "Ioffe and Szegedy" in text  # a citation
    assert re.search(r'class="[^"]*solution[^"]*dropdown', text)  # a gated dropdown solution
    assert "5.987" in text  # the solution's code cell ran
    assert "Colab" in text and "Binder" in text  # launch buttons
    assert "subprocess.run" not in text  # the Colab install cell is removed from the page
    # _ext/bnlib_site.py: no ipywidgets state (no manager loads it), MathJax by components
    assert "application/vnd.jupyter.widget-state+json" not in text
    assert "mathjax/startup.js" in text and "tex-chtml.js" not in text
    # the bibliography labels entries the way the text cites them
    references = (template_book.html / "references.html").read_text(encoding="utf-8")
    labels = re.findall(r'<span class="label"><span class="fn-bracket">\[</span>(.*?)<', references)
    assert "Ioffe and Szegedy 2015" in labels, labels
    assert not [label for label in labels if "{" in label or "\\" in label], labels  # LaTeX decoded


def test_chapter_template_links_resolve(template_book, check_links):
    report = check_links.check_site(template_book.html)
    assert report.ok, report.format()


# --- the link checker itself ------------------------------------------------------------------


@pytest.fixture
def tiny_site(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.png").write_bytes(b"\x89PNG")
    (tmp_path / "style.css").write_text("body{}")
    (tmp_path / "sub" / "index.html").write_text('<h1 id="top">Sub</h1>')
    (tmp_path / "index.html").write_text(
        """<html><head><link rel="stylesheet" href="style.css?v=1"><script src="https://cdn.example.org/x.js"></script></head>
        <body><h1 id="intro">Intro</h1><a name="legacy"></a>
        <a href="#intro">ok</a> <a href="#legacy">ok</a> <a href="page.html#sec">ok</a> <a href="sub/">ok</a>
        <a href="sub/index.html#top">ok</a> <img src="img/ok.png"> <a href="mailto:a@b.c">ok</a>
        <a href="https://example.org/">external</a> <img src="data:image/png;base64,AAAA">
        </body></html>"""
    )
    (tmp_path / "page.html").write_text(
        """<h2 id="sec">Sec</h2><a href="index.html#intro">ok</a><a href="page%20two.html">ok</a>"""
    )
    (tmp_path / "page two.html").write_text("<p>spaces</p>")
    return tmp_path


def test_check_links_passes_a_good_site(tiny_site, check_links):
    report = check_links.check_site(tiny_site)
    assert report.ok, report.format()
    assert report.pages == 4
    assert "https://example.org/" in report.external_links
    assert "https://cdn.example.org/x.js" in report.external_resources


@pytest.mark.parametrize(
    "html, kind, target",
    [
        ('<a href="missing.html">x</a>', "link", "missing.html"),
        ('<a href="page.html#nope">x</a>', "anchor", "page.html#nope"),
        ('<a href="#nope">x</a>', "anchor", "#nope"),
        ('<img src="img/missing.png">', "resource", "img/missing.png"),
        ('<script src="_static/missing.js"></script>', "resource", "_static/missing.js"),
        ('<link rel="stylesheet" href="missing.css">', "resource", "missing.css"),
        ('<a href="../../outside.html">x</a>', "link", "../../outside.html"),
        ('<a href="/abs.html">x</a>', "link", "/abs.html"),
    ],
)
def test_check_links_finds_what_is_broken(tiny_site, check_links, html, kind, target):
    (tiny_site / "broken.html").write_text(f"<html><body>{html}</body></html>")
    report = check_links.check_site(tiny_site)
    assert not report.ok
    assert [(p.page, p.kind, p.target) for p in report.problems] == [("broken.html", kind, target)]


def test_check_links_cli_exit_status(tiny_site, check_links, capsys):
    assert check_links.main([str(tiny_site)]) == 0
    (tiny_site / "broken.html").write_text('<a href="nowhere.html">x</a>')
    assert check_links.main([str(tiny_site)]) == 1
    assert "broken link 'nowhere.html'" in capsys.readouterr().out
    assert check_links.main([str(tiny_site / "does-not-exist")]) == 2
