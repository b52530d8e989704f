"""_ext/bnlib_site.py, the book's local Sphinx extension: the parts that run without a build."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT

pybtex = pytest.importorskip("pybtex")


def load_extension():
    spec = importlib.util.spec_from_file_location("bnlib_site", ROOT / "_ext" / "bnlib_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bibliography_labels_read_like_author_year_citations():
    from pybtex.database import Entry, Person
    from pybtex.plugin import find_plugin

    load_extension()._register_author_year_style()
    style = find_plugin("pybtex.style.formatting", "author_year")()

    def entry(year, *authors):
        return Entry("article", fields={"year": year, "title": "t"}, persons={"author": [Person(a) for a in authors]})

    entries = [
        entry("2012", "Montavon, Gr{\\'e}goire", "M{\\\"u}ller, Klaus-Robert"),
        entry("2017", "van Laarhoven, Twan"),
        entry("2016", "He, Kaiming", "Zhang, Xiangyu", "Ren, Shaoqing"),
        entry("2016", "He, Kaiming", "Sun, Jian", "Ren, Shaoqing"),
    ]
    assert list(style.format_labels(entries)) == [
        "Montavon and Müller 2012", "van Laarhoven 2017", "He et al. 2016a", "He et al. 2016b",
    ]


def test_the_widget_state_script_is_dropped_and_nothing_else():
    class Script:
        def __init__(self, kind):
            self.attributes = {"type": kind} if kind else {}

    scripts = [Script(None), Script("application/vnd.jupyter.widget-state+json"), Script("text/javascript")]
    context = {"script_files": scripts}
    load_extension().drop_widget_state(None, "page", "page.html", context, None)
    assert [s.attributes.get("type") for s in context["script_files"]] == [None, "text/javascript"]
    assert context["script_files"] is scripts, "the list Sphinx renders from is edited in place"


def _kernel_log(tmp_path, name):
    """Start a kernel as myst-nb's executor does (a default KernelManager), run one line; its log."""
    from jupyter_client.manager import KernelManager

    log = tmp_path / f"{name}.log"
    km = KernelManager(kernel_name="python3")
    with open(log, "w") as stderr:
        km.start_kernel(stderr=stderr)
        try:
            client = km.client()
            client.start_channels()
            client.wait_for_ready(timeout=60)
            reply = client.execute_interactive("6 * 7", timeout=60)
            assert reply["content"]["status"] == "ok"
            client.stop_channels()
        finally:
            km.shutdown_kernel(now=True)
    return km.transport_encryption, log.read_text()


def test_chapter_kernels_start_without_the_unencrypted_tcp_warning(tmp_path):
    # ipykernel >= 7.4 logs "Kernel is running over TCP without encryption" for a kernel whose
    # manager provisioned no CurveZMQ keys: once per executed chapter in the build log.
    manager = pytest.importorskip("jupyter_client.manager")
    trait = manager.KernelManager.class_traits().get("transport_encryption")
    if trait is None:
        pytest.skip("this jupyter_client has no transport encryption (and ipykernel no warning)")
    default = trait.default_value
    try:
        trait.default_value = "disabled"
        policy, before = _kernel_log(tmp_path, "default")
        assert policy == "disabled"
        load_extension().encrypt_kernel_transport()
        policy, after = _kernel_log(tmp_path, "extension")
    finally:
        trait.default_value = default
    assert policy == "auto"
    if "without encryption" not in before:
        pytest.skip("this ipykernel does not warn about unencrypted TCP")
    assert "without encryption" not in after, after
    assert "WARNING" not in after, after


def test_a_script_registered_twice_is_emitted_once():
    # Jupyter Book 1 registers sphinx-thebe's inline configuration twice; the second
    # "const THEBE_JS_URL" is a SyntaxError in the browser.
    assets = pytest.importorskip("sphinx.builders.html._assets")
    script = assets._JavaScript
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [script(None, body=thebe), script("a.js"), script("", body=thebe, priority=200), script("a.js"),
               script(None, body="const other = 1"), script("a.js", **{"async": "async"})]
    context = {"script_files": scripts}
    load_extension().drop_widget_state(None, "page", "page.html", context, None)
    kept = [(s.filename, dict(s.attributes)) for s in context["script_files"]]
    assert kept == [(None, {"body": thebe}), ("a.js", {}), (None, {"body": "const other = 1"}),
                    ("a.js", {"async": "async"})]
