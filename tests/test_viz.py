"""bnlib.viz: the book's style and its two-way interactive figures."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import time

import matplotlib
from matplotlib.figure import Figure
import numpy as np
import pytest

matplotlib.use("Agg")

from bnlib import viz  # noqa: E402

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def draw_line(fig, slope, color="C0", dashed=False):
    ax = fig.subplots()
    x = np.linspace(-1, 1, 50)
    ax.plot(x, slope * x, color=viz.COLORS["with_bn"] if color == "C0" else color, ls="--" if dashed else "-")
    ax.set_ylim(-4, 4)


def frames_in_html(text: str) -> list:
    """The frames of a static interactive figure: the JSON list with the <img>'s frame put back."""
    frames = json.loads(re.search(r'<script type="application/json" class="bnlib-frames">(.*?)</script>', text).group(1))
    config = json.loads(re.search(r'<script type="application/json" class="bnlib-config">(.*?)</script>', text).group(1))
    img = re.search(r'<img class="bnlib-frame" src="data:image/png;base64,([^"]+)"', text).group(1)
    assert frames[config["default"]] is None  # stored once, in the <img>
    frames[config["default"]] = img
    return frames


def png_pixels(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


# --- style --------------------------------------------------------------------


def test_use_style_is_idempotent_and_sets_the_book_style():
    with matplotlib.rc_context():
        viz.use_style()
        once = dict(matplotlib.rcParams)
        viz.use_style()
        assert dict(matplotlib.rcParams) == once
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.rcParams["axes.spines.right"] is False
        assert matplotlib.rcParams["figure.constrained_layout.use"] is True
        assert tuple(matplotlib.rcParams["figure.figsize"]) == (6.4, 3.6)
        cycle = [c.lower() for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
        assert set(cycle) == {c.lower() for c in viz.PALETTE}


def test_palette_is_okabe_ito_and_colors_use_it():
    okabe_ito = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}
    assert [c.lower() for c in viz.PALETTE] == [
        "#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"
    ]
    for key in ("without_bn", "with_bn", "data", "reference", "highlight"):
        assert viz.COLORS[key].lower() in okabe_ito
    assert viz.COLORS["with_bn"] != viz.COLORS["without_bn"]


def test_subplots_applies_the_style():
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"axes.spines.top": True}):
        fig, axes = viz.subplots(1, 2)
        try:
            assert len(axes) == 2
            assert not axes[0].spines["top"].get_visible()
        finally:
            plt.close(fig)


def test_importing_bnlib_does_not_import_matplotlib():
    code = "import sys, bnlib; print('matplotlib' in sys.modules, 'bnlib.viz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- interactive figures: the bundle and the static frames ------------------------------


def test_bundle_has_widget_view_and_static_html():
    handle = viz.InteractiveFigure(draw_line, {"slope": [0.5, 1.0, 2.0]})
    bundle = handle.mimebundle()
    assert set(bundle) >= {WIDGET_MIME, "text/html", "image/png", "text/plain"}
    assert bundle[WIDGET_MIME]["model_id"] == handle.widget.model_id
    assert 'class="bnlib-interactive"' in bundle["text/html"]
    # the PNG fallback is the default frame
    assert base64.b64decode(bundle["image/png"]) == handle.frames[0]


def test_one_frame_per_combination_and_the_frames_differ():
    controls = {"slope": [0.5, 1.0, 2.0], "dashed": [False, True], "color": ["#D55E00", "#0072B2"]}
    handle = viz.InteractiveFigure(draw_line, controls)
    frames = frames_in_html(handle.to_html())
    assert len(frames) == 3 * 2 * 2 == handle.n_frames
    assert len(set(frames)) == len(frames), "every combination must render a different picture"
    # frames are in itertools.product order: frame_index agrees with what was drawn
    i = handle.frame_index(slope=2.0, dashed=True, color="#0072B2")
    assert i == 11
    ref = viz.InteractiveFigure(draw_line, {"slope": [2.0], "dashed": [True], "color": ["#0072B2"]})
    assert np.array_equal(png_pixels(frames[i]), png_pixels(base64.b64encode(ref.frames[0]).decode()))
    # all frames have the same pixel size, so the page does not jump
    assert len({png_pixels(f).shape for f in frames}) == 1


def test_static_html_is_self_contained_and_accessible():
    handle = viz.InteractiveFigure(
        draw_line,
        {
            "slope": viz.Control([0.5, 1.0, 2.0], label="slope a", fmt=".1f", default=1.0),
            "dashed": [False, True],
            "color": ["#D55E00", "#0072B2"],
        },
        alt="A line",
    )
    text = handle.to_html()
    assert "http://" not in text and "https://" not in text and "src=\"//" not in text
    assert re.search(r'<input type="range" id="[^"]+" min="0" max="2" step="1" value="1"', text)
    assert '<input type="checkbox"' in text and "<select" in text
    for cid in re.findall(r'<(?:input|select) [^>]*id="([^"]+)"', text):
        assert f'<label for="{cid}">' in text, "every control has a label"
        assert f'<output for="{cid}"' in text, "every control shows its current value"
    assert ">1.0</output>" in text  # the default, formatted
    assert 'alt="A line (slope a = 1.0, dashed = False, color = #D55E00)"' in text
    # the image carries the default frame; the script keeps no second copy of it
    config = json.loads(re.search(r'class="bnlib-config">(.*?)</script>', text).group(1))
    assert config["default"] == handle.frame_index(slope=1.0, dashed=False, color="#D55E00") == 4


def test_two_figures_get_distinct_ids():
    a = viz.InteractiveFigure(draw_line, {"slope": [1.0, 2.0]})
    b = viz.InteractiveFigure(draw_line, {"slope": [1.0, 2.0]})
    ids_a = set(re.findall(r'id="([^"]+)"', a.to_html()))
    ids_b = set(re.findall(r'id="([^"]+)"', b.to_html()))
    assert ids_a and not ids_a & ids_b


def test_frame_count_guard():
    controls = {"a": list(range(11)), "b": list(range(10))}
    calls = []
    with pytest.raises(ValueError, match=r"110 combinations.*a: 11 x b: 10.*at most 100"):
        viz.InteractiveFigure(lambda fig, a, b: calls.append(1), controls)
    assert not calls, "the guard must act before drawing anything"
    viz.InteractiveFigure(lambda fig, a, b: None, {"a": list(range(10)), "b": list(range(10))})  # 100 is fine


def test_draw_errors_propagate():
    def broken(fig, k):
        if k == 2:
            raise RuntimeError("draw failed at k=2")
        fig.subplots().plot([0, k])

    with pytest.raises(RuntimeError, match="draw failed at k=2"):
        viz.InteractiveFigure(broken, {"k": [1, 2, 3]})


@pytest.mark.parametrize(
    "controls, message",
    [
        ({}, "at least one"),
        ({"x": []}, "must not be empty"),
        ({"not a name": [1]}, "identifier"),
        ({"x": "abc"}, "list of numbers"),
        ({"x": [object()]}, "numbers, bools or strings"),
        ([("x", [1, 2])], "dict"),
        ({"x": [1, 2, 1.0]}, "distinct"),
    ],
)
def test_bad_controls_are_rejected(controls, message):
    with pytest.raises((ValueError, TypeError), match=message):
        viz.InteractiveFigure(draw_line, controls)


def test_control_default_must_be_a_value():
    with pytest.raises(ValueError, match="not one of its values"):
        viz.Control([1, 2, 3], default=4)


def test_draw_must_not_use_pyplot():
    import matplotlib.pyplot as plt

    def via_pyplot(fig, k):
        plt.figure()
        plt.plot([0, k])

    before = plt.get_fignums()
    with pytest.warns(UserWarning, match="pyplot"):
        viz.InteractiveFigure(via_pyplot, {"k": [1, 2]})
    assert plt.get_fignums() == before, "stray pyplot figures are closed"


# --- the live rendering ------------------------------------------------------------------


def test_live_widget_redraws_on_change_reusing_one_figure():
    handle = viz.InteractiveFigure(draw_line, {"slope": [0.5, 1.0, 2.0], "dashed": [False, True]}, live="redraw")
    handle.build_widget()
    figure = handle.figure
    before = handle._image.value
    handle._inputs["slope"].value = 2.0
    after_slope = handle._image.value
    handle._inputs["dashed"].value = True
    after_dashed = handle._image.value
    assert before != after_slope != after_dashed
    assert handle.figure is figure
    # the live picture shows what the static frame shows
    live = np.asarray(_decode(after_dashed), dtype=float)
    static = np.asarray(_decode(handle.frames[handle.frame_index(slope=2.0, dashed=True)]), dtype=float)
    assert live.shape == static.shape
    assert np.abs(live - static).mean() < 3.0  # palette quantization only


def test_live_draw_errors_propagate_outside_a_kernel():
    state = {"fail": False}

    def sometimes(fig, k):
        if state["fail"]:
            raise ValueError("boom in draw")
        fig.subplots().plot([0, k])

    handle = viz.InteractiveFigure(sometimes, {"k": [1, 2]}, live="redraw")
    handle.build_widget()
    state["fail"] = True
    with pytest.raises(ValueError, match="boom in draw"):
        handle._inputs["k"].value = 2
    assert handle._image.value == handle.frames[0], "the last good picture stays"


def _decode(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


# --- display in IPython ------------------------------------------------------------------


def test_interactive_figure_displays_exactly_once_in_a_kernel():
    """Run a cell in a real kernel: one output, with the widget view and the static HTML."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np\nfrom bnlib import viz\n"
            "def draw(fig, a):\n    fig.subplots().plot(np.arange(5) * a)\n"
            "viz.interactive_figure(draw, {'a': [1, 2, 3]})"
        ),
        nbformat.v4.new_code_cell("h = viz.interactive_figure(draw, {'a': [1, 2]}, live='redraw')"),
        # a live redraw whose draw() fails shows the traceback under the figure
        nbformat.v4.new_code_cell(
            "def fail(fig, a):\n    raise ValueError('boom in draw')\n"
            "h.draw = fail\nh._inputs['a'].value = 2"
        ),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    first, second, third = (cell.outputs for cell in nb.cells)
    assert len(first) == 1 and len(second) == 1, "shown once, whether or not the handle is the last expression"
    data = first[0]["data"]
    assert set(data) >= {WIDGET_MIME, "text/html", "image/png", "text/plain"}
    assert data["text/html"].count('class="bnlib-interactive"') == 1
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert data[WIDGET_MIME]["model_id"] in state
    # the stored widget state stays small: controls and one frame, never all the frames
    assert len(json.dumps(nb.metadata["widgets"])) < 100_000
    assert not third, "the error goes to the figure's error area, not the cell"
    captured = [m["state"].get("outputs", []) for m in state.values() if m["model_name"] == "OutputModel"]
    assert any("boom in draw" in json.dumps(outputs) for outputs in captured)


def test_figure_png_is_a_palette_png_of_the_inline_backends_picture():
    from PIL import Image

    with matplotlib.rc_context():
        viz.use_style()
        fig = Figure()
        ax = fig.subplots()
        ax.plot(np.linspace(0, 1, 50) ** 2, label="a curve")
        ax.set_xlabel("x")
        ax.legend()
        png = viz.figure_png(fig)
        plain = io.BytesIO()
        fig.canvas.print_figure(plain, format="png", bbox_inches="tight", dpi=fig.dpi)
    ours, theirs = Image.open(io.BytesIO(png)), Image.open(plain)
    assert ours.mode == "P" and ours.size == theirs.size
    assert len(png) < 0.6 * len(plain.getvalue())
    difference = np.abs(np.asarray(ours.convert("RGB"), float) - np.asarray(theirs.convert("RGB"), float))
    assert difference.mean() < 2.0, "quantizing changes the picture only slightly"
    assert viz.figure_png(Figure()) is None, "an empty figure is not shown"


def test_the_backend_setting_is_read_on_matplotlib_without_auto_select(monkeypatch):
    # matplotlib < 3.10 has get_backend() without the auto_select keyword (Colab may have one)
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "agg")
    with matplotlib.rc_context({"backend": "agg"}):
        assert viz._configured_backend() == "agg"


def test_figures_in_a_kernel_are_shown_as_palette_pngs():
    import nbformat
    from nbclient import NotebookClient
    from PIL import Image

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from bnlib import viz\nviz.use_style()\nfig, ax = viz.subplots()\nax.plot([0, 1], [1, 0])"
        ),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1, 2])\nplt.show()"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    for cell in nb.cells:
        pngs = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, cell.outputs
        assert Image.open(io.BytesIO(base64.b64decode(pngs[0]))).mode == "P"


def test_live_frames_mode_shows_the_precomputed_frames():
    calls = []

    def counted(fig, slope):
        calls.append(slope)
        draw_line(fig, slope)

    handle = viz.InteractiveFigure(counted, {"slope": [0.5, 1.0, 2.0]}, live="frames")
    assert len(calls) == 3
    handle.build_widget()
    handle._inputs["slope"].value = 2.0
    assert len(calls) == 3, "no redraw in frames mode"
    assert handle._image.value == handle.frames[2]
    with pytest.raises(ValueError, match="live must be"):
        viz.InteractiveFigure(counted, {"slope": [1.0]}, live="sometimes")


def test_live_auto_picks_frames_for_a_slow_draw():
    def slow(fig, k):
        time.sleep(0.12)
        fig.subplots().plot([0, k])

    def borderline(fig, k):  # fast enough to draw, too slow once the widget's round trip is added
        time.sleep(0.06)

    assert viz.InteractiveFigure(slow, {"k": [1, 2]}).live == "frames"
    assert viz.InteractiveFigure(borderline, {"k": [1, 2]}).live == "frames"
    assert viz.InteractiveFigure(lambda fig, k: None, {"k": [1, 2]}).live == "redraw"


def test_glue_numbers_converts_numpy_scalars(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: (value, display)}))
    viz.glue_numbers({"a": np.float64(0.5), "n": np.int64(3), "s": "text", "b": np.bool_(True)}, prefix="ch")
    assert glued == {"ch-a": (0.5, False), "ch-n": (3, False), "ch-s": ("text", False), "ch-b": (True, False)}
    assert type(glued["ch-a"][0]) is float and type(glued["ch-n"][0]) is int
