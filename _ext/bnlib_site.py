"""A local Sphinx extension that keeps every page of the static site light.

The design's budget is 3 MB for one chapter page with everything it loads. Two things the
defaults add to every page are not needed here:

* myst-nb embeds the ipywidgets state saved by the execution in each page that displayed a
  widget, for an ipywidgets manager to rebuild the widget in the browser. This book loads no
  such manager (``nb_ipywidgets_js`` is empty): its interactive figures show precomputed
  frames instead, so the state, which holds the widget's last image, is 20-35 KB of dead weight.
* sphinx-mathjax-offline points ``mathjax_path`` at MathJax's combined ``tex-chtml.js``
  (1.2 MB, including a 0.4 MB right-click menu). ``mathjax/startup.js`` with the components
  listed in ``mathjax3_config`` (``_config.yml``) loads 0.4 MB less from the same copy.
"""

from __future__ import annotations

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MATHJAX_PATH = "mathjax/startup.js"


def use_mathjax_components(app, config):
    """Load MathJax by components; sphinx-mathjax-offline set the combined file in its setup()."""
    config.mathjax_path = MATHJAX_PATH


def drop_widget_state(app, pagename, templatename, context, doctree):
    """Remove the ipywidgets state script that myst-nb added to this page's scripts."""
    scripts = context.get("script_files")
    if scripts:
        scripts[:] = [js for js in scripts if getattr(js, "attributes", {}).get("type") != WIDGET_STATE]


def setup(app):
    app.connect("config-inited", use_mathjax_components, priority=900)
    app.connect("html-page-context", drop_widget_state, priority=900)  # after myst-nb's (500)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
