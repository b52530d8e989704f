"""The book's local Sphinx extension: light pages, and a bibliography labelled like its citations.

The design's budget is 3 MB for one chapter page with everything it loads. Two things the
defaults add to every page are not needed here:

* myst-nb embeds the ipywidgets state saved by the execution in each page that displayed a
  widget, for an ipywidgets manager to rebuild the widget in the browser. This book loads no
  such manager (``nb_ipywidgets_js`` is empty): its interactive figures show precomputed
  frames instead, so the state, which holds the widget's last image, is 20-35 KB of dead weight.
* sphinx-mathjax-offline points ``mathjax_path`` at MathJax's combined ``tex-chtml.js``
  (1.2 MB, including a 0.4 MB right-click menu). ``mathjax/startup.js`` with the components
  listed in ``mathjax3_config`` (``_config.yml``) loads 0.4 MB less from the same copy.

The text cites author-year ("Ioffe and Szegedy [2015]", ``bibtex_reference_style``), so the
References page labels its entries the same way ("[Ioffe and Szegedy 2015]"), through the
pybtex style ``author_year`` registered here (``bibtex_default_style`` in ``_config.yml``),
instead of alpha labels ("[IS15]") a reader cannot match to the citation.

The chapters execute in kernels that myst-nb starts through jupyter_client. ipykernel (from 7.4)
logs "Kernel is running over TCP without encryption" to the build log for every kernel whose
manager did not provision CurveZMQ keys, and jupyter_client's default policy is not to. myst-nb
and jupyter-cache pass no configuration to the kernel manager, so the extension sets the class
default of ``KernelManager.transport_encryption`` to ``"auto"``: keys are provisioned when the
kernelspec declares Curve support (ipykernel's does) and pyzmq has it, and the kernel traffic,
local as it is, is encrypted; otherwise nothing changes. The build log then says nothing alarming.
"""

from __future__ import annotations

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MATHJAX_PATH = "mathjax/startup.js"


def use_mathjax_components(app, config):
    """Load MathJax by components; sphinx-mathjax-offline set the combined file in its setup()."""
    config.mathjax_path = MATHJAX_PATH


def drop_widget_state(app, pagename, templatename, context, doctree):
    """Remove the ipywidgets state script that myst-nb added to this page's scripts, and repeats.

    Jupyter Book 1 sets up sphinx-thebe and sphinx-togglebutton so that their inline
    configuration scripts are registered twice; the second ``const THEBE_JS_URL = ...`` is a
    SyntaxError ("Identifier 'THEBE_JS_URL' has already been declared") on every page. A script
    identical to an earlier one (same file, same attributes and body) is dropped.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    kept, seen = [], set()
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        if attributes.get("type") == WIDGET_STATE:
            continue
        # an inline script's filename is None or "", and the priority may differ between the two
        # registrations: only what the page gets counts
        filename = getattr(js, "filename", str(js)) or ""
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


def encrypt_kernel_transport():
    """Make jupyter_client provision CurveZMQ keys for the kernels that execute the chapters."""
    try:
        from jupyter_client.manager import KernelManager
    except ImportError:  # no execution, no kernel
        return
    trait = KernelManager.class_traits().get("transport_encryption")
    if trait is not None:  # jupyter_client < 8.9 has neither the option nor ipykernel's warning
        trait.default_value = "auto"


def _register_author_year_style():
    """Register the pybtex formatting style ``author_year``: plain entries, author-year labels."""
    from collections import Counter

    from pybtex.plugin import register_plugin
    from pybtex.richtext import Text
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        """``Ba et al. 2016``, ``Ioffe and Szegedy 2015``, ``LeCun 1998``; a, b, ... on clashes."""

        def format_labels(self, sorted_entries):
            labels = [self.format_label(entry) for entry in sorted_entries]
            count, seen = Counter(labels), Counter()
            for label in labels:
                yield label if count[label] == 1 else label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1

        @staticmethod
        def format_label(entry):
            persons = entry.persons.get("author") or entry.persons.get("editor") or []
            # "M{\"u}ller" in the .bib file is "Müller" in the label
            names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in persons]
            if not names:
                who = entry.key
            elif len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            return f"{who} {entry.fields.get('year', 'n.d.')}"

    class AuthorYearStyle(PlainStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle, force=True)


def setup(app):
    _register_author_year_style()
    encrypt_kernel_transport()
    app.connect("config-inited", use_mathjax_components, priority=900)
    app.connect("html-page-context", drop_widget_state, priority=900)  # after myst-nb's (500)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
