"""The book's plotting style and its interactive figures.

This module imports matplotlib (and, lazily, Pillow, IPython and ipywidgets);
the numpy-only core of :mod:`bnlib` never imports it. Chapters do::

    from bnlib import viz
    viz.use_style()
    fig, ax = viz.subplots()

Interactive figures
-------------------
:func:`interactive_figure` turns a drawing function and a few discrete
controls into ONE notebook output that carries two renderings:

* ``application/vnd.jupyter.widget-view+json``: live ipywidgets controls that
  redraw one reused :class:`matplotlib.figure.Figure` in a running kernel
  (JupyterLab, Notebook, Colab, Binder, VS Code);
* ``text/html``: every combination of control values precomputed as a PNG
  frame, embedded in base64 with a small inline script and native
  ``<input type="range">`` / ``<select>`` / checkbox controls. It needs no
  kernel, no CDN and no network, so it works on the static website.

Plus ``image/png`` (the default frame) and ``text/plain`` for other outputs.
A live front end picks the widget; the book's ``_config.yml`` tells myst-nb to
drop the widget mime type (``nb_mime_priority_overrides``) and not to load the
ipywidgets JavaScript from a CDN (``nb_ipywidgets_js: {}``), so the website
shows the precomputed slider.

The executed notebook's widget state holds the controls and one frame, never
all of them (the book's ``_ext/bnlib_site.py`` leaves it out of the pages). A
cell that ends with the call shows the figure once. ``draw`` errors propagate
while the frames are computed (so a chapter build fails); in a live redraw
they are shown under the figure.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import itertools
import json
import math
import numbers
import sys
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "CYCLE",
    "COLORS",
    "STYLE",
    "MAX_FRAMES",
    "use_style",
    "figure_png",
    "subplots",
    "Control",
    "InteractiveFigure",
    "interactive_figure",
    "glue_numbers",
]

# Okabe & Ito (2008), "Color Universal Design": distinguishable with the common
# colour-vision deficiencies, in their published order.
PALETTE = [
    "#000000",  # black
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
]

# Line colour cycle: the same colours, strongest first; yellow last because it
# is hard to see on white.
CYCLE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]

# Fixed meanings, the same in every chapter.
COLORS = {
    "with_bn": "#0072B2",  # blue
    "without_bn": "#D55E00",  # vermillion
    "data": "#56B4E9",  # sky blue
    "reference": "#000000",  # black (draw dashed)
    "highlight": "#E69F00",  # orange
    "accent": "#CC79A7",  # reddish purple
    "secondary": "#009E73",  # bluish green
    "neutral": "#999999",  # grey, for context (not an Okabe-Ito colour)
}

# The book's rcParams. Figures are sized for the book's text column.
STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
    "font.size": 10.5,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.frameon": False,
    "axes.prop_cycle": mpl.cycler(color=CYCLE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#b0b0b0",
    "grid.linewidth": 0.6,
    "grid.alpha": 0.4,
    "lines.linewidth": 1.8,
    "lines.markersize": 5.0,
    "scatter.edgecolors": "none",
    "image.cmap": "viridis",
    "axes.formatter.use_mathtext": True,
    "mathtext.fontset": "dejavusans",
}

#: Most frames one interactive figure may precompute (the product of the
#: number of values of every control). Keeps a chapter page under its size budget.
MAX_FRAMES = 100

# The book's budget for a live change. live="auto" redraws only when one frame renders in under
# half of it (the other half goes to the widget's round trip and the browser); slower figures
# show their precomputed frames, which are the same pictures, at once.
LIVE_REDRAW_SECONDS = 0.1

# Above this many bytes of embedded frames per figure, warn (a warning in a
# chapter fails the book build, which is the point).
MAX_EMBED_BYTES = 1_500_000

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Every live handle, so that benchmarks/bench_book.py can time the live redraws of a chapter.
_INSTANCES: "weakref.WeakSet[InteractiveFigure]" = weakref.WeakSet()
_MARKER_CLASS = "bnlib-interactive"


def use_style() -> None:
    """Apply the book's matplotlib style (:data:`STYLE`) globally.

    In an IPython kernel it also has figures shown as palette PNGs (see
    :func:`figure_png`), 3-4 times smaller than matplotlib's, which keeps the
    built pages within their size budget. Idempotent: calling it again changes
    nothing.
    """
    mpl.rcParams.update(STYLE)
    _show_figures_as_palette_png()


def figure_png(fig: Figure) -> bytes | None:
    """``fig`` as the PNG a notebook shows, with a 256-colour palette.

    Drawn like IPython's inline backend draws it (``bbox_inches="tight"``, the
    figure's own dpi and facecolour), then quantized as the interactive frames
    are. ``None`` for a figure with nothing on it, which IPython then skips.
    """
    if not fig.axes and not fig.lines and not fig.images and not fig.texts:
        return None
    from PIL import Image

    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format="png", bbox_inches="tight", dpi=fig.dpi,
                            facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor())
    return _encode_png(Image.open(buf), quantize=True)


def _configured_backend() -> str:
    """The backend rcParams name, without making matplotlib pick one ("" if none is set yet)."""
    try:
        backend = mpl.get_backend(auto_select=False)
    except TypeError:  # matplotlib < 3.10 (Colab may have one): read the raw setting
        backend = dict.__getitem__(mpl.rcParams, "backend")
    return backend if isinstance(backend, str) else ""


def _show_figures_as_palette_png() -> None:
    """Register :func:`figure_png` as the kernel's PNG formatter for figures, if in IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    if "matplotlib_inline.backend_inline" not in sys.modules:
        backend = _configured_backend()
        if "matplotlib_inline" in backend or backend == "inline":
            # The inline backend registers its own formatter when it is first loaded (with the
            # first figure); load it now, so that ours, registered next, is the one that stays.
            import matplotlib_inline.backend_inline  # noqa: F401
    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``matplotlib.pyplot.subplots`` with the book's style applied first.

    Returns ``(fig, axes)`` exactly like pyplot.
    """
    import matplotlib.pyplot as plt

    use_style()
    return plt.subplots(nrows, ncols, **kwargs)


# ---------------------------------------------------------------------------
# Controls
# ---------------------------------------------------------------------------


@dataclass
class Control:
    """One control of an :func:`interactive_figure`: a discrete list of values.

    Parameters
    ----------
    values : sequence
        The values the control can take (numbers, bools or strings), in display
        order. Numbers become a slider, ``[False, True]`` a checkbox, anything
        else a drop-down list.
    label : str, optional
        Text shown next to the control; defaults to the parameter's name.
    fmt : str or callable, optional
        How a value is shown: a format spec (``".2f"``), a ``str.format``
        template (``"{:.0%}"``) or a function ``value -> str``. Defaults to
        ``str`` (``:g`` for floats).
    default : optional
        The value shown first; defaults to ``values[0]``. Must be one of ``values``.
    """

    values: Sequence[Any]
    label: str | None = None
    fmt: str | Callable[[Any], str] | None = None
    default: Any = None

    def __post_init__(self):
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, (Sequence, np.ndarray)):
            raise TypeError(
                f"Control values must be a list of numbers, bools or strings; got {type(self.values).__name__}"
            )
        values = [v.item() if isinstance(v, np.generic) else v for v in self.values]
        if not values:
            raise ValueError("Control values must not be empty")
        for v in values:
            if not isinstance(v, (numbers.Number, str, bool)):
                raise TypeError(
                    f"Control values must be numbers, bools or strings; got {v!r} of type {type(v).__name__}"
                )
        for i, v in enumerate(values):
            if any(_same(v, u) for u in values[:i]):
                raise ValueError(f"Control values must be distinct; {v!r} appears twice in {values!r}")
        self.values = values
        if self.default is not None:
            if not any(_same(self.default, v) for v in values):
                raise ValueError(f"Control default {self.default!r} is not one of its values {values!r}")

    @property
    def default_index(self) -> int:
        if self.default is None:
            return 0
        return next(i for i, v in enumerate(self.values) if _same(self.default, v))

    def format(self, value) -> str:
        fmt = self.fmt
        if fmt is None:
            if isinstance(value, float):
                return f"{value:g}"
            return str(value)
        if callable(fmt):
            return str(fmt(value))
        if "{" in fmt:
            return fmt.format(value)
        return format(value, fmt)

    @property
    def kind(self) -> str:
        """``"range"``, ``"checkbox"`` or ``"select"``."""
        vals = self.values
        if len(vals) == 2 and all(isinstance(v, bool) for v in vals) and vals[0] != vals[1]:
            return "checkbox"
        if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in vals):
            return "range"
        return "select"


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b or (
        isinstance(a, numbers.Number) and isinstance(b, numbers.Number)
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def _normalise_controls(controls: Mapping[str, Any]) -> dict[str, Control]:
    if not isinstance(controls, Mapping):
        raise TypeError(
            "controls must be a dict name -> list of values (or viz.Control); "
            f"got {type(controls).__name__}"
        )
    if not controls:
        raise ValueError("controls must name at least one parameter")
    out = {}
    for name, spec in controls.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"control name {name!r} must be a valid Python identifier (it is passed to draw)")
        ctrl = spec if isinstance(spec, Control) else Control(spec)
        if ctrl.label is None:
            ctrl = dataclasses.replace(ctrl, label=name)
        out[name] = ctrl
    return out


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _encode_png(image, quantize: bool) -> bytes:
    """Encode a canvas's current pixels, or a PIL image, as PNG (palette-quantized if asked)."""
    from PIL import Image

    if isinstance(image, FigureCanvasAgg):
        image = Image.fromarray(np.asarray(image.buffer_rgba()), "RGBA")
    img = image.convert("RGBA")
    if img.getextrema()[3][0] < 255:  # some transparency: flatten onto white
        background = Image.new("RGB", img.size, "white")
        background.paste(img, mask=img.split()[3])
        img = background
    else:
        img = img.convert("RGB")
    if quantize:
        # Plots use few colours: a 256-colour palette is visually lossless and
        # makes the PNG 2-4x smaller.
        img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="png", optimize=quantize, compress_level=9 if quantize else 1)
    return buf.getvalue()


class InteractiveFigure:
    """The handle returned by :func:`interactive_figure`.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
        The single figure that every frame and every live redraw uses.
    controls : dict[str, Control]
    frames : list[bytes]
        PNG bytes, one per combination of control values, in
        ``itertools.product`` order (the first control varies slowest).
    widget : ipywidgets.Widget or None
        The live widget (None when ipywidgets is not installed).
    """

    _counter = 0

    def __init__(self, draw, controls, *, figsize=None, dpi=None, alt=None, live="auto"):
        if live not in ("auto", "redraw", "frames"):
            raise ValueError(f'live must be "auto", "redraw" or "frames"; got {live!r}')
        if not callable(draw):
            raise TypeError(f"draw must be a function draw(fig, **params); got {type(draw).__name__}")
        self.draw = draw
        self.controls = _normalise_controls(controls)
        sizes = [len(c.values) for c in self.controls.values()]
        n_frames = math.prod(sizes)
        if n_frames > MAX_FRAMES:
            detail = " x ".join(f"{name}: {n}" for name, n in zip(self.controls, sizes))
            raise ValueError(
                f"interactive_figure: {n_frames} combinations of control values ({detail}); "
                f"at most {MAX_FRAMES} frames can be precomputed for the static website. "
                "Use fewer values per control or fewer controls."
            )
        self.n_frames = n_frames
        self.alt = alt
        with mpl.rc_context(STYLE):
            figsize = tuple(figsize) if figsize is not None else tuple(STYLE["figure.figsize"])
            self.dpi = float(dpi) if dpi is not None else float(STYLE["figure.dpi"])
            self.figure = Figure(figsize=figsize, dpi=self.dpi)
        self._canvas = FigureCanvasAgg(self.figure)
        self.frames = self._render_frames()
        if live == "auto":  # keep a live change under ~100 ms
            live = "redraw" if self.frame_seconds < LIVE_REDRAW_SECONDS / 2 else "frames"
        self.live = live
        InteractiveFigure._counter += 1
        digest = hashlib.sha1(b"".join(self.frames[:3])).hexdigest()[:8]
        self.uid = f"bnlib-if-{InteractiveFigure._counter}-{digest}"
        self.widget = None
        self._displayed_at = None
        _INSTANCES.add(self)

    # -- drawing -----------------------------------------------------------

    def default_params(self) -> dict[str, Any]:
        return {name: c.values[c.default_index] for name, c in self.controls.items()}

    def render(self, *, quantize: bool = True, **params) -> bytes:
        """Draw ``params`` on the reused figure and return PNG bytes."""
        with mpl.rc_context(STYLE):
            self.figure.clear()
            self.draw(self.figure, **params)
            self._canvas.draw()
        return _encode_png(self._canvas, quantize)

    def _render_frames(self) -> list[bytes]:
        pyplot = sys.modules.get("matplotlib.pyplot")
        before = set(pyplot.get_fignums()) if pyplot else set()
        names = list(self.controls)
        frames = []
        seconds = []
        for combo in itertools.product(*(c.values for c in self.controls.values())):
            start = time.perf_counter()
            frames.append(self.render(**dict(zip(names, combo))))
            seconds.append(time.perf_counter() - start)
        self.frame_seconds = float(np.median(seconds))
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            stray = set(pyplot.get_fignums()) - before
            for num in stray:
                pyplot.close(num)
            if stray:
                warnings.warn(
                    "interactive_figure: draw() created pyplot figures (closed them); "
                    "draw on the `fig` argument instead (fig.subplots(), fig.add_subplot()).",
                    stacklevel=3,
                )
        total = sum(len(f) for f in frames)
        if total > MAX_EMBED_BYTES:
            warnings.warn(
                f"interactive_figure: {len(frames)} frames take {total / 1e6:.1f} MB; keep one figure "
                f"under {MAX_EMBED_BYTES / 1e6:.1f} MB (fewer values, smaller figsize or dpi).",
                stacklevel=3,
            )
        return frames

    def frame_index(self, **params) -> int:
        """Index into :attr:`frames` of a combination of control values."""
        index = 0
        for name, ctrl in self.controls.items():
            value = params.get(name, ctrl.values[ctrl.default_index])
            pos = next((i for i, v in enumerate(ctrl.values) if _same(value, v)), None)
            if pos is None:
                raise ValueError(f"{value!r} is not a value of control {name!r}: {ctrl.values!r}")
            index = index * len(ctrl.values) + pos
        return index

    # -- the static rendering ------------------------------------------------

    def _alt_text(self, params) -> str:
        head = self.alt or "Interactive figure"
        state = ", ".join(f"{c.label} = {c.format(params[n])}" for n, c in self.controls.items())
        return f"{head} ({state})"

    def _css_size(self) -> tuple[int, int]:
        """Display size in CSS pixels: the figure's inches at 100 px per inch."""
        width, height = self.figure.get_size_inches() * 100
        return int(round(width)), int(round(height))

    def to_html(self) -> str:
        """Self-contained HTML: native controls, the frames, an inline script."""
        uid = self.uid
        params = self.default_params()
        default = self.frame_index(**params)
        rows = []
        meta = []
        for k, (name, ctrl) in enumerate(self.controls.items()):
            cid = f"{uid}-c{k}"
            labels = [ctrl.format(v) for v in ctrl.values]
            d = ctrl.default_index
            lab = html.escape(ctrl.label)
            kind = ctrl.kind if len(labels) > 1 else "select"
            if kind == "range":
                widget = (
                    f'<input type="range" id="{cid}" min="0" max="{len(labels) - 1}" step="1" '
                    f'value="{d}" aria-valuetext="{html.escape(labels[d])}" style="vertical-align:middle">'
                )
            elif kind == "checkbox":
                checked = " checked" if ctrl.values[d] is True else ""
                widget = f'<input type="checkbox" id="{cid}"{checked} style="vertical-align:middle">'
            else:
                opts = "".join(
                    f'<option value="{i}"{" selected" if i == d else ""}>{html.escape(s)}</option>'
                    for i, s in enumerate(labels)
                )
                disabled = " disabled" if len(labels) == 1 else ""
                widget = f'<select id="{cid}"{disabled}>{opts}</select>'
            rows.append(
                f'<span class="bnlib-control" style="white-space:nowrap">'
                f'<label for="{cid}">{lab}</label> {widget} '
                f'<output for="{cid}" id="{cid}-v" aria-live="polite">{html.escape(labels[d])}</output></span>'
            )
            meta.append(
                {
                    "id": cid,
                    "kind": kind,
                    "n": len(labels),
                    "labels": labels,
                    "label": ctrl.label,
                    "true": ctrl.values.index(True) if kind == "checkbox" else None,
                }
            )
        b64 = [base64.b64encode(f).decode("ascii") for f in self.frames]
        first = b64[default]
        b64[default] = None  # the <img> already holds it
        css_w, css_h = self._css_size()
        alt = html.escape(self._alt_text(params))
        config = json.dumps({"controls": meta, "default": default, "alt": self.alt or "Interactive figure"})
        return (
            f'<div class="{_MARKER_CLASS}" id="{uid}" data-frames="{self.n_frames}" '
            'style="margin:0.5em 0 1em 0">'
            '<div class="bnlib-controls" role="group" aria-label="Figure controls" '
            'style="display:flex;flex-wrap:wrap;gap:0.3em 1.5em;align-items:center;margin-bottom:0.3em">'
            + "".join(rows)
            + "</div>"
            f'<img class="bnlib-frame" src="data:image/png;base64,{first}" alt="{alt}" '
            f'width="{css_w}" height="{css_h}" style="max-width:100%;height:auto">'
            f'<script type="application/json" class="bnlib-config">{_script_safe(config)}</script>'
            f'<script type="application/json" class="bnlib-frames">{json.dumps(b64)}</script>'
            f"<script>{_JS.replace('__UID__', uid)}</script>"
            "</div>"
        )

    # -- the live rendering --------------------------------------------------

    def build_widget(self):
        """The live ipywidgets rendering (created once, then reused)."""
        if self.widget is not None:
            return self.widget
        import ipywidgets as w

        inputs = {}
        for name, ctrl in self.controls.items():
            options = [(ctrl.format(v), v) for v in ctrl.values]
            value = ctrl.values[ctrl.default_index]
            common = {"description": ctrl.label, "style": {"description_width": "initial"}}
            if ctrl.kind == "checkbox":
                widget = w.Checkbox(value=value, indent=False, **common)
            elif ctrl.kind == "range" and len(options) > 1:
                # Redraw while dragging only when a redraw is quick; otherwise on release, so that
                # changes do not queue up behind a slow draw.
                quick = self.live == "frames" or self.frame_seconds < LIVE_REDRAW_SECONDS
                widget = w.SelectionSlider(options=options, value=value, continuous_update=quick, **common)
            else:
                widget = w.Dropdown(options=options, value=value, **common)
            inputs[name] = widget
        css_width, _ = self._css_size()
        self._image = w.Image(
            value=self.frames[self.frame_index(**self.default_params())],
            format="png",
            width=str(css_width),  # natural size: a front end would otherwise stretch it, blurred
            layout=w.Layout(max_width="100%", height="auto"),
        )
        self._errors = w.Output()
        self._inputs = inputs

        def redraw(_change=None):
            params = {n: wd.value for n, wd in inputs.items()}
            if self.live == "frames":
                self._image.value = self.frames[self.frame_index(**params)]
                return
            with self._errors:
                self._errors.clear_output(wait=True)
                self._image.value = self.render(quantize=False, **params)

        for widget in inputs.values():
            widget.observe(redraw, names="value")
        self._redraw = redraw
        controls_box = w.HBox(list(inputs.values()), layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([controls_box, self._image, self._errors])
        return self.widget

    def mimebundle(self, *, widget: bool = True) -> dict[str, Any]:
        """The output bundle: widget view (if available), text/html, image/png, text/plain."""
        params = self.default_params()
        desc = ", ".join(f"{c.label}: {len(c.values)} values" for c in self.controls.values())
        bundle: dict[str, Any] = {
            "text/plain": f"<{self.alt or 'Interactive figure'}: {desc}; {self.n_frames} precomputed frames>",
            "text/html": self.to_html(),
            "image/png": base64.b64encode(self.frames[self.frame_index(**params)]).decode("ascii"),
        }
        if widget:
            try:
                view = self.build_widget()
            except ImportError:
                view = None
            if view is not None:
                bundle[_WIDGET_MIME] = {"version_major": 2, "version_minor": 0, "model_id": view.model_id}
        return bundle

    def _ipython_display_(self):
        # interactive_figure() displays the handle itself; when the handle is
        # also a cell's last expression, the display hook must not show it twice.
        shell = _ipython_shell()
        count = getattr(shell, "execution_count", None)
        if self._displayed_at is not None and self._displayed_at == count:
            return
        self._displayed_at = count
        from IPython.display import display

        display(self.mimebundle(), raw=True)

    def __repr__(self):
        return f"<InteractiveFigure {self.uid}: {', '.join(self.controls)}; {self.n_frames} frames>"


def _ipython_shell():
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:  # pragma: no cover
        return None


def _script_safe(text: str) -> str:
    """Make JSON safe inside a <script> element."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def interactive_figure(
    draw: Callable[..., Any],
    controls: Mapping[str, Any],
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float | None = None,
    alt: str | None = None,
    live: str = "auto",
) -> InteractiveFigure:
    """Show a figure that redraws when its controls move, live or static.

    Parameters
    ----------
    draw : callable
        ``draw(fig, **params)`` draws on the given, already cleared
        :class:`matplotlib.figure.Figure` (use ``fig.subplots()``,
        ``fig.add_subplot()``; never pyplot). It is called once per
        combination of control values, and again on every live change.
    controls : dict
        Ordered ``name -> list of values`` or ``name -> Control(values,
        label=..., fmt=..., default=...)``. Each name is passed to ``draw`` as a
        keyword argument. At most :data:`MAX_FRAMES` combinations in total.
    figsize, dpi : optional
        Figure size in inches and frame resolution (default: the book style's
        6.4 x 3.6 in at 100 dpi).
    alt : str, optional
        A short description of the figure for screen readers; the current
        control values are appended.
    live : {"auto", "redraw", "frames"}
        What the live widget does when a control moves: ``"redraw"`` calls
        ``draw`` again on the reused figure; ``"frames"`` shows the precomputed
        frame, instantly. ``"auto"`` (default) redraws when one frame took under
        50 ms to render (half the 100 ms budget), and shows frames otherwise, so the figure always
        responds within the book's 100 ms budget.

    Returns
    -------
    InteractiveFigure
        The handle (already displayed in IPython; a cell ending with it shows
        it once).

    Notes
    -----
    The output holds a live ipywidgets view and a precomputed static slider; a
    kernel front end shows the first, the book's HTML the second. Errors in
    ``draw`` propagate while precomputing frames; during live redraws they are
    shown below the figure.
    """
    handle = InteractiveFigure(draw, controls, figsize=figsize, dpi=dpi, alt=alt, live=live)
    if _ipython_shell() is not None:
        from IPython.display import display

        display(handle)
    return handle


# The static slider's script: finds its own root by id, maps the controls'
# positions to a frame index (first control slowest), swaps the <img> source.
_JS = r"""(function(){
var root=document.getElementById("__UID__");if(!root||root.getAttribute("data-ready"))return;
root.setAttribute("data-ready","1");
var cfg=JSON.parse(root.querySelector("script.bnlib-config").textContent);
var frames=JSON.parse(root.querySelector("script.bnlib-frames").textContent);
var img=root.querySelector("img.bnlib-frame");frames[cfg["default"]]=img.getAttribute("src").slice(22);
function pos(c,el){if(c.kind==="checkbox"){return el.checked?c["true"]:1-c["true"];}
return c.kind==="range"?parseInt(el.value,10):el.selectedIndex;}
function update(){var i=0,parts=[];cfg.controls.forEach(function(c){var el=document.getElementById(c.id);
var p=pos(c,el);i=i*c.n+p;var t=c.labels[p];document.getElementById(c.id+"-v").textContent=t;
if(c.kind==="range")el.setAttribute("aria-valuetext",t);parts.push(c.label+" = "+t);});
img.src="data:image/png;base64,"+frames[i];img.alt=cfg.alt+" ("+parts.join(", ")+")";
root.setAttribute("data-frame",i);}
cfg.controls.forEach(function(c){var el=document.getElementById(c.id);
el.addEventListener("input",update);el.addEventListener("change",update);});
root.setAttribute("data-frame",cfg["default"]);
})();"""


def glue_numbers(values: Mapping[str, Any], prefix: str) -> None:
    """Hand computed numbers to the chapter's prose, as ``{glue:text}`<prefix>-<name>```.

    NumPy scalars become plain ``int``/``float`` (myst-nb's format specs such as
    ``:.3f`` do not apply to their ``np.float64(...)`` repr); strings pass through.
    Nothing is displayed in the cell.
    """
    from myst_nb import glue

    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, (numbers.Integral, np.integer)):
            value = int(value)
        elif not isinstance(value, str):
            value = float(value)
        glue(f"{prefix}-{name}", value, display=False)
