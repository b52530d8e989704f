"""Write the notebook edition: every chapter as a plain Jupyter notebook that reads like the website.

    python scripts/make_notebooks.py                 # chapters/NN_name.ipynb for every chapter (make notebooks)
    python scripts/make_notebooks.py --check         # write nothing; exit 1 if a notebook is missing or stale
    python scripts/make_notebooks.py --out DIR       # somewhere else
    python scripts/make_notebooks.py --cache PATH    # another build's execution cache

The MyST-Markdown chapter (``chapters/NN_name.md``) is the one source. Notebook front ends
(JupyterLab, Notebook 7, Colab, VS Code, nbconvert) render CommonMark, GFM tables and ``$...$``
maths, and nothing of MyST, so the launch notebooks that the Binder and Colab buttons open are
written here with no MyST left:

* ``{glue:text}`name:.2f``` becomes the value the book build computed, formatted as myst-nb
  formats it. The values come from the executed notebook in Jupyter Book's execution cache
  (``_build/.jupyter_cache``, matched by the hash of the chapter's code cells, as myst-nb matches
  it); when the cache holds no execution of the chapter's current code, the chapter is executed
  here (nbclient, in ``chapters/``) and the values are read from that run. The chapters are
  seeded, so a reader who runs the notebook gets the same numbers.
* ``{cite:t}``/``{cite:p}`` become "Ioffe and Szegedy (2015)" / "(Ioffe and Szegedy, 2015)",
  linked to the entry's ``doi`` or ``url`` in ``references.bib``.
* ``{numref}``/``{ref}`` become "Figure 4.2", "Exercise 4.1" or the section's title, with the
  book's numbering (chapters numbered through the numbered parts of ``_toc.yml``; figures and
  exercises per chapter), linked to the heading (same notebook) or to the other notebook.
* a code cell's figure caption (``mystnb: figure: caption`` metadata, which no front end shows)
  becomes a markdown cell "**Figure 4.2.** ..." under the cell.
* admonitions become blockquotes with their title in bold; ``{literalinclude}`` (``:pyobject:``,
  ``:lines:``, ``:start-after:``, ``:end-before:``) becomes the included code in a fenced block;
  ``(label)=`` targets and ``%`` comments go; exercises become numbered headings ("Exercise 4.1").
* the install cell (tagged ``remove-cell``) and the cells the website collapses (``hide-input``)
  are collapsed: ``metadata.jupyter.source_hidden`` for JupyterLab/Notebook 7/VS Code, and a first
  line ``#@title ...`` with ``cellView: form`` for Colab, which shows the title instead of the code.

**Solutions.** In the launch notebooks the solutions are gathered, in exercise order, under a
final "Solutions" heading: each exercise ends with a pointer to its solution, the heading is
collapsed in JupyterLab 4 (``jp-MarkdownHeadingCollapsed``) and every solution code cell is
collapsed too (``source_hidden`` + ``#@title``, which Colab shows as a closed form). Why at the
end rather than in place: no front end can exclude a cell from *Run All*, so a solution left
under its exercise would run (and redefine the reader's function) before the reader's own cell
is ever tried, and in Colab a form-view cell still runs. At the end, *Run All* reaches the
solutions only after every exercise cell has run the reader's code and its self-check; and the
same form works in JupyterLab, Notebook 7, VS Code and Colab. Every exercise in this book is
independent of the earlier solutions (the student notebooks, which hold none, run top to
bottom), so moving them changes no result.

``student_notebook()`` gives the same edition with the solutions left out (for
``scripts/make_student.py``). Cell ids derive from the cells' contents, so regenerating an
unchanged chapter rewrites the same bytes. Sphinx never reads these notebooks (``"**.ipynb"`` in
``_config.yml``'s ``exclude_patterns``); Jupyter Book's launch buttons open them because a
``.ipynb`` of the same name sits beside the page's source. ``make notebooks`` first runs
``scripts/add_install_cell.py``, which keeps the sources' install cell and format current.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import os
import re
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_install_cell import INSTALL_TAG, is_install_cell, toc_chapters  # noqa: E402  (scripts/ is not a package)

DEFAULT_CACHE = ROOT / "_build" / ".jupyter_cache"
GLUE_PREFIX = "application/papermill.record/"
HIDDEN_TAGS = {INSTALL_TAG, "remove-input", "hide-input", "hide-cell"}
ADMONITIONS = {
    "admonition", "note", "tip", "hint", "important", "warning", "caution", "attention",
    "danger", "error", "seealso", "margin", "sidebar", "topic", "dropdown",
}
EXECUTION_TIMEOUT = 300  # seconds per cell, as _config.yml


class ConversionError(ValueError):
    """MyST that the notebook edition cannot express (a missing label, glue value, file...)."""


# --- MyST block structure ---------------------------------------------------------------------

DIRECTIVE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:.-]+)\}[ \t]*(?P<arg>.*?)[ \t]*$")
PLAIN_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):(?:[ \t]+(?P<value>.*?))?[ \t]*$")


@dataclass
class Directive:
    name: str
    arg: str
    options: dict
    body: str


@dataclass
class Verbatim:
    text: str  # a fenced code block, copied as it is


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]} and line[: len(line) - len(line.lstrip())].count(" ") <= 3


def _skip_block(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing the fence opened at ``start`` (nested fences skipped)."""
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if _closes(line, fence):
            return i
        inner = DIRECTIVE_OPEN.match(line)
        if inner and inner.group("fence")[0] == fence[0] and len(inner.group("fence")) < len(fence):
            i = _skip_block(lines, i, inner.group("fence")) + 1
            continue
        plain = PLAIN_FENCE_OPEN.match(line)
        if plain and plain.group("info").strip() and plain.group("fence")[0] != fence[0]:
            i = _skip_block(lines, i, plain.group("fence")) + 1
            continue
        i += 1
    return len(lines)  # unclosed: runs to the end, as CommonMark does


def _parse_directive(name: str, arg: str, content: list[str]) -> Directive:
    options: dict = {}
    if content and content[0].strip() == "---":
        end = next((k for k in range(1, len(content)) if content[k].strip() == "---"), None)
        if end is not None:
            options = yaml.safe_load("\n".join(content[1:end])) or {}
            content = content[end + 1:]
    else:
        while content and OPTION.match(content[0]):
            m = OPTION.match(content[0])
            options[m.group("key")] = m.group("value") or ""
            content = content[1:]
    return Directive(name, arg, options, "\n".join(content).strip("\n"))


def split_blocks(text: str) -> list:
    """``text`` as a list of plain-markdown strings, ``Directive``s and ``Verbatim`` code blocks."""
    lines = text.split("\n")
    blocks, plain, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE_OPEN.match(line)
        fence = PLAIN_FENCE_OPEN.match(line) if directive is None else None
        if directive or fence:
            if plain:
                blocks.append("\n".join(plain))
                plain = []
            end = _skip_block(lines, i, (directive or fence).group("fence"))
            if directive:
                blocks.append(_parse_directive(directive.group("name"), directive.group("arg"), lines[i + 1:end]))
            else:
                blocks.append(Verbatim("\n".join(lines[i:end + 1])))
            i = end + 1
            continue
        plain.append(line)
        i += 1
    if plain:
        blocks.append("\n".join(plain))
    return blocks


# --- the book: numbering, labels, bibliography ------------------------------------------------


@dataclass
class Target:
    title: str  # what {ref} shows: a section's title, "Figure 4.2", "Exercise 4.1"
    number: str | None  # what {numref} shows, e.g. "Figure 4.2", "Section 4.3"
    chapter: Path
    anchor: str | None  # JupyterLab's id of the heading, if it is one


@dataclass
class ChapterInfo:
    path: Path
    number: int | None
    title: str = ""
    exercises: dict = field(default_factory=dict)  # label -> number text ("4.1")
    exercise_headings: dict = field(default_factory=dict)  # label -> heading text ("Exercise 4.1")
    solutions: set = field(default_factory=set)  # exercise labels that have a solution
    n_tables: int = 0  # {table} directives, numbered like figures ("Table 7.1")


HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<text>.+?)[ \t#]*$")
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=[ \t]*$")


def heading_anchor(text: str) -> str:
    """The id JupyterLab (and nbconvert) give a heading: its text, spaces as hyphens."""
    plain = re.sub(r"`([^`]*)`", r"\1", text)
    plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", plain)
    plain = re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", plain)
    return plain.strip().replace(" ", "-")


def heading_title(text: str) -> str:
    """A heading's text as {ref} shows it: inline markup reduced to its words."""
    return re.sub(r"\{[\w:.-]+\}`([^`]*)`", r"\1", text).strip()


def chapter_numbers(root: Path) -> dict[str, int]:
    """``{"chapters/04_x": 4, ...}``: documents in numbered parts, numbered on through the book."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    numbers, count = {}, 0
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []) or []:
            if part.get("numbered") and "file" in entry:
                count += 1
                numbers[re.sub(r"\.(md|ipynb)$", "", entry["file"])] = count
    return numbers


class Book:
    """Everything a chapter's references need: numbers, titles and labels of the whole book."""

    def __init__(self, root: Path = ROOT, chapters: list[Path] | None = None):
        self.root = root
        self.chapters = [Path(c).resolve() for c in (chapters or toc_chapters(root))]
        numbers = chapter_numbers(root)
        self.info: dict[Path, ChapterInfo] = {}
        self.targets: dict[str, Target] = {}
        for path in self.chapters:
            doc = path.relative_to(root.resolve()).with_suffix("").as_posix() if path.is_relative_to(root.resolve()) else path.stem
            self._index(path, numbers.get(doc))
        self.bibliography = read_bibliography(root / "references.bib")

    def number(self, info: ChapterInfo, k: int | None = None) -> str:
        if info.number is None:
            return "" if k is None else str(k)
        return str(info.number) if k is None else f"{info.number}.{k}"

    def _index(self, path: Path, number: int | None):
        info = ChapterInfo(path, number)
        self.info[path] = info
        nb = jupytext.read(path)
        pending: list[str] = []
        counters = [0] * 7  # section numbers by heading level
        n_figures = n_exercises = 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                figure = cell.metadata.get("mystnb", {}).get("figure", {})
                if figure.get("caption"):
                    n_figures += 1
                    if figure.get("name"):
                        self._add(figure["name"], Target(f"Figure {self.number(info, n_figures)}",
                                                         f"Figure {self.number(info, n_figures)}", path, None))
                pending = []
                continue
            for block in split_blocks(cell.source):
                if isinstance(block, Directive):
                    if block.name in ("exercise-start", "exercise") and "nonumber" not in block.options:
                        n_exercises += 1
                        label = block.options.get("label")
                        number_text = self.number(info, n_exercises)
                        if label:
                            info.exercises[label] = number_text
                            info.exercise_headings[label] = exercise_heading(number_text, block.arg)
                            self._add(label, Target(f"Exercise {number_text}", f"Exercise {number_text}", path,
                                                    heading_anchor(exercise_heading(number_text, block.arg))))
                    elif block.name in ("solution-start", "solution"):
                        info.solutions.add(block.arg.strip())
                    elif block.name == "table":
                        info.n_tables += 1
                        shown = f"Table {self.number(info, info.n_tables)}"
                        if block.options.get("name"):
                            self._add(block.options["name"], Target(shown, shown, path, None))
                    pending = []
                    continue
                if isinstance(block, Verbatim):
                    pending = []
                    continue
                for line in block.split("\n"):
                    target = TARGET.match(line.strip())
                    if target:
                        pending.append(target.group("label"))
                        continue
                    heading = HEADING.match(line)
                    if heading:
                        level = len(heading.group("hashes"))
                        text = heading_title(heading.group("text"))
                        if level == 1:
                            info.title = text
                        section = section_number(counters, level, self.number(info))
                        shown = numbered_heading(text, section if info.number is not None else "")
                        anchor = None if level == 1 else heading_anchor(shown)  # a chapter: its notebook
                        for label in pending:
                            self._add(label, Target(text, f"Section {section}" if section else text, path, anchor))
                        pending = []
                    elif line.strip():
                        pending = []

    def _add(self, label: str, target: Target):
        if label in self.targets:
            raise ConversionError(f"label {label!r} is defined twice ({self.targets[label].chapter.name}, {target.chapter.name})")
        self.targets[label] = target


def exercise_heading(number: str, title: str = "") -> str:
    """The heading text of an exercise: "Exercise 4.1", or "Exercise 4.1 (Its title)"."""
    return f"Exercise {number}".rstrip() + (f" ({title.strip()})" if title.strip() else "")


def numbered_heading(text: str, section: str) -> str:
    """A heading's text as the website shows it: "4. The chapter", "4.2. A section"."""
    return f"{section}. {text}" if section else text


def section_number(counters: list[int], level: int, chapter: str) -> str:
    """Count a heading of ``level`` (1-6) in ``counters`` and return its number ("4.2.1")."""
    if level == 1:
        counters[:] = [0] * 7
        return chapter
    counters[level] += 1
    counters[level + 1:] = [0] * (6 - level)
    return ".".join([chapter, *map(str, counters[2:level + 1])]) if chapter else ""


# --- bibliography -------------------------------------------------------------------------------


@dataclass
class Reference:
    who: str  # "Ioffe and Szegedy", "Santurkar et al."
    year: str
    link: str | None


def read_bibliography(path: Path) -> dict[str, Reference]:
    from pybtex.database import parse_file
    from pybtex.richtext import Text

    if not path.exists():
        return {}
    refs = {}
    for key, entry in parse_file(str(path)).entries.items():
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in persons]
        if not names:
            who = key
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        doi, url = entry.fields.get("doi"), entry.fields.get("url")
        link = f"https://doi.org/{doi}" if doi else (url or None)
        refs[key] = Reference(who, entry.fields.get("year", "n.d."), link)
    return refs


# --- glue values --------------------------------------------------------------------------------


def glue_data(nb) -> dict[str, dict]:
    """``{name: mime bundle}`` of every ``glue`` call in an executed notebook (as myst-nb reads them)."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if not scrapbook:
                continue
            prefix = len(scrapbook.get("mime_prefix", ""))
            found[scrapbook["name"]] = {k[prefix:]: v for k, v in output.get("data", {}).items()}
    return found


def format_plain_text(text: str, fmt_spec: str) -> str:
    """myst-nb's formatting of a glued ``text/plain`` value (``myst_nb.core.variables``)."""
    from myst_nb.core.variables import format_plain_text as myst_format

    return myst_format(text, fmt_spec)


def build_notebook(chapter: Path):
    """The chapter read as myst-nb reads it for execution (the form the cache's hashes are of)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    config = MdParserConfig(enable_extensions={"colon_fence", "dollarmath", "amsmath", "deflist", "substitution"})
    return read_myst_markdown_notebook(chapter.read_text(encoding="utf-8"), config=config, path=chapter)


def execution_cache(cache_dir: Path | None = None):
    """Jupyter Book's execution cache: ``cache_dir``, else $BNLIB_JUPYTER_CACHE, else _build/.jupyter_cache."""
    from jupyter_cache import get_cache

    return get_cache(str(cache_dir or os.environ.get("BNLIB_JUPYTER_CACHE") or DEFAULT_CACHE))


def cached_execution(chapter: Path, cache_dir: Path | None = None):
    """The executed notebook of the chapter's current code from Jupyter Book's cache, or None."""
    path = Path(cache_dir or os.environ.get("BNLIB_JUPYTER_CACHE") or DEFAULT_CACHE)
    if not (path / "global.db").exists():
        return None
    cache = execution_cache(path)
    try:
        record = cache.match_cache_notebook(build_notebook(chapter))
    except KeyError:
        return None
    return cache.get_cache_bundle(record.pk).nb


def execute_chapter(chapter: Path, cache_dir: Path | None = None):
    """Run the chapter top to bottom (every code cell, solutions too) as the book build does.

    The executed notebook goes into the execution cache, as myst-nb would store it, so that
    neither the next ``make notebooks`` nor ``make book`` runs the same code again.
    """
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.executors.utils import single_nb_execution

    nb = build_notebook(chapter)
    # as myst-nb runs it (no timing metadata in the cells, which would change the cache's hash)
    result = single_nb_execution(nb, cwd=str(chapter.parent), timeout=EXECUTION_TIMEOUT, allow_errors=False)
    if result.err is not None:
        raise ConversionError(f"{chapter.name}: executing it failed:\n{result.exc_string}")
    execution_cache(cache_dir).cache_notebook_bundle(
        CacheBundleIn(nb, str(chapter), data={"execution_seconds": result.time}), check_validity=False, overwrite=True)
    return nb


_GLUE_MEMO: dict[tuple[str, str], dict] = {}


def chapter_glue(chapter: Path, cache_dir: Path | None = None, log=print) -> dict[str, dict]:
    """The chapter's glued values: from the execution cache, else from an execution of its own."""
    chapter = Path(chapter).resolve()
    memo_key = (str(chapter), hashlib.sha1(chapter.read_bytes()).hexdigest())
    if memo_key in _GLUE_MEMO:
        return _GLUE_MEMO[memo_key]
    if "{glue" not in chapter.read_text(encoding="utf-8"):
        return {}  # nothing glued: no need to run the chapter
    executed = cached_execution(chapter, cache_dir)
    if executed is None:
        log(f"{chapter.name}: no execution of its current code in the execution cache; executing it")
        start = time.perf_counter()
        executed = execute_chapter(chapter, cache_dir)
        log(f"{chapter.name}: executed in {time.perf_counter() - start:.1f} s")
    _GLUE_MEMO[memo_key] = glue_data(executed)
    return _GLUE_MEMO[memo_key]


# --- inline MyST --------------------------------------------------------------------------------

ROLE_OR_CODE = re.compile(
    r"\{(?P<role>[a-zA-Z][\w:.-]*)\}(?P<rticks>`+)(?P<content>.+?)(?<!`)(?P=rticks)(?!`)"
    r"|(?P<ticks>`+).+?(?<!`)(?P=ticks)(?!`)"
    r"|\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$",
    re.S,
)
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<label>[^<>]+)>$", re.S)


class Converter:
    """Turns one chapter's MyST into plain notebook markdown."""

    def __init__(self, book: Book, chapter: Path, glue: dict[str, dict]):
        self.book = book
        self.chapter = Path(chapter).resolve()
        self.info = book.info[self.chapter]
        self.glue = glue
        self.counters = [0] * 7  # section numbers by heading level, as Book counts them
        self.tables = 0  # {table} directives met so far, numbered as Book numbers them

    # links ---------------------------------------------------------------------------------

    def href(self, target: Target) -> str | None:
        if target.chapter == self.chapter:
            return f"#{target.anchor}" if target.anchor else None
        page = target.chapter.with_suffix(".ipynb").name
        return f"{page}#{target.anchor}" if target.anchor else page

    def link(self, text: str, target: Target) -> str:
        href = self.href(target)
        return f"[{text}]({href})" if href else text

    def target(self, label: str) -> Target:
        label = label.strip()
        if label not in self.book.targets:
            raise ConversionError(f"{self.chapter.name}: no label {label!r} in the book")
        return self.book.targets[label]

    # roles ---------------------------------------------------------------------------------

    def glue_text(self, content: str) -> str:
        key, _, fmt_spec = content.rpartition(":") if ":" in content else (content, "", "s")
        if not key:
            key, fmt_spec = content, "s"
        if "::" in key:
            raise ConversionError(f"{self.chapter.name}: glue from another document ({content!r}) is not supported")
        if key not in self.glue:
            raise ConversionError(f"{self.chapter.name}: no glued value {key!r} in its executed notebook")
        data = self.glue[key]
        if "text/plain" not in data:
            raise ConversionError(f"{self.chapter.name}: glued value {key!r} has no text/plain form")
        return format_plain_text(data["text/plain"], fmt_spec)

    def cite(self, role: str, content: str) -> str:
        parts = []
        for key in (k.strip() for k in content.split(",")):
            ref = self.book.bibliography.get(key)
            if ref is None:
                raise ConversionError(f"{self.chapter.name}: citation {key!r} is not in references.bib")
            parts.append((ref, key))
        if role in ("cite:t", "cite:ts"):
            items = [f"[{ref.who} ({ref.year})]({ref.link})" if ref.link else f"{ref.who} ({ref.year})" for ref, _ in parts]
            return ", ".join(items)
        items = [f"[{ref.who}, {ref.year}]({ref.link})" if ref.link else f"{ref.who}, {ref.year}" for ref, _ in parts]
        return f"({'; '.join(items)})" if role in ("cite:p", "cite", "cite:ps") else "; ".join(items)

    def role(self, name: str, content: str) -> str:
        if name in ("glue:text", "glue", "glue:any"):
            return self.glue_text(content)
        if name.startswith("cite"):
            return self.cite(name, content)
        if name in ("numref", "ref", "doc"):
            explicit = EXPLICIT.match(content)
            text, label = (explicit.group("text"), explicit.group("label")) if explicit else (None, content)
            if name == "doc":
                page = (self.chapter.parent / label).with_suffix(".ipynb")
                return f"[{text or page.stem}]({page.name})"
            target = self.target(label)
            if name == "numref":
                number = (target.number or target.title).split(" ", 1)[-1]
                shown = text.replace("%s", number).replace("{number}", number) if text else target.number or target.title
            else:
                shown = text or target.title
            return self.link(shown, target)
        if name == "math":
            return f"${content}$"
        if name in ("term", "abbr", "download", "file", "samp", "kbd", "guilabel", "command", "program", "any"):
            explicit = EXPLICIT.match(content)
            return explicit.group("text") if explicit else content
        if name in ("sub", "subscript"):
            return f"<sub>{content}</sub>"
        if name in ("sup", "superscript"):
            return f"<sup>{content}</sup>"
        if name in ("code", "literal"):
            return f"`{content}`"
        raise ConversionError(f"{self.chapter.name}: the role {{{name}}} has no plain-markdown form here")

    def inline(self, text: str) -> str:
        def replace(m: re.Match) -> str:
            if m.group("role"):
                return self.role(m.group("role"), m.group("content"))
            return m.group(0)  # a code span or maths: left as it is

        text = ROLE_OR_CODE.sub(replace, text)
        return LINK.sub(self._link, text)

    def _link(self, m: re.Match) -> str:
        target = m.group("target")
        label = target[1:] if target.startswith("#") else target
        if label in self.book.targets:
            href = self.href(self.book.targets[label])
            return f"[{m.group('text')}]({href})" if href else m.group("text")
        if re.fullmatch(r"[^:/#]+\.md(#.*)?", target):
            path, _, anchor = target.partition("#")
            page = (self.chapter.parent / path).resolve()
            if page in self.book.info:
                return f"[{m.group('text')}]({page.with_suffix('.ipynb').name}{'#' + anchor if anchor else ''})"
        return m.group(0)

    # blocks --------------------------------------------------------------------------------

    def markdown(self, text: str, sections: bool = False) -> str:
        """Plain markdown for a MyST text with no gated exercise/solution fences in it.

        ``sections``: its headings are the chapter's sections, numbered as on the website.
        """
        out = []
        for block in split_blocks(text):
            if isinstance(block, Verbatim):
                out.append(block.text)
            elif isinstance(block, Directive):
                out.append(self.directive(block))
            else:
                lines = []
                for line in block.split("\n"):
                    if TARGET.match(line.strip()) or line.startswith("%"):
                        continue
                    heading = HEADING.match(line) if sections else None
                    if heading:
                        level = len(heading.group("hashes"))
                        section = section_number(self.counters, level, self.book.number(self.info))
                        line = f"{heading.group('hashes')} {numbered_heading(heading.group('text'), section)}"
                    lines.append(line)
                out.append(self.inline("\n".join(lines)))
        return tidy("\n\n".join(out))

    def directive(self, d: Directive) -> str:
        if d.name in ADMONITIONS or d.name.startswith("admonition"):
            title = d.arg if d.arg else d.name.capitalize()
            body = self.markdown(d.body)
            if "dropdown" in str(d.options.get("class", "")).split() or d.name == "dropdown":
                # collapsed on the website: an HTML <details> that every front end folds
                summary = html_inline(self.inline(title))
                return f"<details>\n<summary><strong>{summary}</strong></summary>\n\n{body}\n\n</details>"
            quoted = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
            return f"> **{self.inline(title)}**\n>\n{quoted}" if body else f"> **{self.inline(title)}**"
        if d.name == "literalinclude":
            return self.literalinclude(d)
        if d.name in ("code-block", "code", "sourcecode"):
            return f"```{d.arg}\n{d.body}\n```"
        if d.name == "math":
            return f"$$\n{d.body}\n$$"
        if d.name in ("figure", "image"):
            alt = d.options.get("alt", "")
            caption = self.markdown(d.body) if d.name == "figure" else ""
            return f"![{alt}]({d.arg})" + (f"\n\n{caption}" if caption else "")
        if d.name == "table":
            # the caption above the table, as the website shows it; the table itself is GFM
            self.tables += 1
            caption = self.inline(d.arg.strip()) if d.arg.strip() else ""
            head = f"**Table {self.book.number(self.info, self.tables)}.**"
            return f"{head} {caption}".rstrip() + f"\n\n{self.markdown(d.body)}"
        if d.name in ("exercise", "solution"):
            raise ConversionError(f"{self.chapter.name}: use the gated {d.name}-start/{d.name}-end form")
        raise ConversionError(f"{self.chapter.name}: the directive {{{d.name}}} has no plain-markdown form here")

    def literalinclude(self, d: Directive) -> str:
        path = (self.chapter.parent / d.arg).resolve()
        if not path.is_file():
            raise ConversionError(f"{self.chapter.name}: {{literalinclude}} {d.arg}: no such file")
        source = path.read_text(encoding="utf-8")
        known = {"pyobject", "lines", "language", "start-after", "end-before", "dedent", "caption", "name", "linenos", "emphasize-lines"}
        unknown = set(d.options) - known
        if unknown:
            raise ConversionError(f"{self.chapter.name}: {{literalinclude}} options {sorted(unknown)} are not supported")
        if "pyobject" in d.options:
            source = python_object(source, d.options["pyobject"], path)
        if "start-after" in d.options:
            source = source.split(d.options["start-after"], 1)[1].split("\n", 1)[-1]
        if "end-before" in d.options:
            source = source.split(d.options["end-before"], 1)[0].rsplit("\n", 1)[0] + "\n"
        if "lines" in d.options:
            lines = source.split("\n")
            keep = []
            for part in str(d.options["lines"]).split(","):
                lo, _, hi = part.strip().partition("-")
                keep.extend(lines[int(lo) - 1:(int(hi) if hi else int(lo))])
            source = "\n".join(keep)
        if "dedent" in d.options:
            source = textwrap.dedent(source)
        language = d.options.get("language") or ("python" if path.suffix == ".py" else "")
        fence = "````" if "```" in source else "```"
        caption = d.options.get("caption")
        block = f"{fence}{language}\n{source.rstrip()}\n{fence}"
        return f"*{caption}*\n\n{block}" if caption else block


def python_object(source: str, name: str, path: Path) -> str:
    """The source of function/class ``name`` (``Class.method`` too) in a Python file, with decorators."""
    tree = ast.parse(source)
    node, scope = None, tree
    for part in name.split("."):
        node = next((n for n in ast.iter_child_nodes(scope)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise ConversionError(f"{path.name}: no object {name!r} for {{literalinclude}} :pyobject:")
        scope = node
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = source.split("\n")[start - 1:node.end_lineno]
    return textwrap.dedent("\n".join(lines)) + "\n"


def html_inline(markdown: str) -> str:
    """A one-line markdown title as HTML (for a <summary>, where markdown is not parsed)."""
    import html

    text = html.escape(markdown, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*([^*]+)\*(?!\*)", r"<em>\1</em>", text)


def tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


# --- the notebook edition -----------------------------------------------------------------------


def cell_id(cell, seen: Counter) -> str:
    key = f"{cell.cell_type}\n{cell.source}"
    seen[key] += 1
    return hashlib.sha1(f"{key}\n{seen[key]}".encode()).hexdigest()[:8]


def markdown_cell(text: str, **metadata):
    cell = nbformat.v4.new_markdown_cell(text, metadata=metadata)
    cell.pop("id", None)
    return cell


def collapsed_code_cell(cell, title: str):
    """``cell`` with its code collapsed: JupyterLab's source_hidden, Colab's form view."""
    cell.source = f"#@title {title}\n{cell.source}"
    cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    cell.metadata["cellView"] = "form"
    return cell


GATED = {"exercise-start", "exercise-end", "solution-start", "solution-end"}


def convert(nb, chapter: Path, book: Book, glue: dict[str, dict], solutions: bool = True):
    """The notebook edition of a chapter read with jupytext (MyST cells) as a plain notebook.

    ``solutions=False`` leaves out every gated solution (the student edition); the cells
    outside the solutions are the same.
    """
    conv = Converter(book, chapter, glue)
    info = conv.info
    main, gathered = [], {}  # gathered: exercise label -> cells of its solution
    state = {"solution": None, "level": 2, "figures": 0, "exercises": 0}

    def emit(cell):
        label = state["solution"]
        if label is None:
            main.append(cell)
        elif solutions:
            gathered.setdefault(label, []).append(cell)

    def emit_markdown(text: str, new_cell: bool = False):
        text = tidy(text)
        if not text:
            return
        dest = main if state["solution"] is None else gathered.setdefault(state["solution"], [])
        if state["solution"] is not None and not solutions:
            return
        if not new_cell and dest and dest[-1].cell_type == "markdown" and dest[-1].metadata.get("bnlib_merge"):
            dest[-1].source = f"{dest[-1].source}\n\n{text}"
        else:
            dest.append(markdown_cell(text, bnlib_merge=True))

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts: list[str] = []
            for block in split_blocks(cell.source):
                if isinstance(block, Directive) and block.name in GATED:
                    emit_markdown("\n\n".join(parts))
                    parts = []
                    gated(block, state, info, emit_markdown, solutions)
                elif isinstance(block, Verbatim):
                    parts.append(block.text)
                elif isinstance(block, Directive):
                    parts.append(conv.directive(block))
                else:
                    for line in block.split("\n"):
                        heading = HEADING.match(line)
                        if heading:
                            state["level"] = len(heading.group("hashes"))
                    parts.append(conv.markdown(block, sections=True))
            emit_markdown("\n\n".join(parts))
            # a markdown cell boundary in the source stays one in the notebook
            for dest in (main, *gathered.values()):
                if dest and dest[-1].cell_type == "markdown":
                    dest[-1].metadata.pop("bnlib_merge", None)
            continue
        new = copy.deepcopy(cell)
        figure = new.metadata.pop("mystnb", {}).get("figure", {})
        new.outputs, new.execution_count = [], None
        tags = set(new.metadata.get("tags", []))
        caption_cell = None
        number = None
        if figure.get("caption"):
            state["figures"] += 1
            number = book.number(info, state["figures"])
            caption_cell = markdown_cell(f"**Figure {number}.** {conv.markdown(figure['caption'])}")
        if state["solution"] is not None:
            collapsed_code_cell(new, f"Solution to Exercise {info.exercises.get(state['solution'], '')}".rstrip())
        elif is_install_cell(new):
            collapsed_code_cell(new, "Setup: install what Colab lacks (does nothing where all is installed)")
        elif tags & HIDDEN_TAGS:
            if number:
                title = f"Code for Figure {number}"
            elif "glue" in new.source:
                title = "Numbers for the text"
            else:
                title = "Code (hidden on the website)"
            collapsed_code_cell(new, title)
        emit(new)
        if caption_cell is not None:
            emit(caption_cell)

    if state["solution"] is not None:
        raise ConversionError(f"{chapter.name}: a solution-start without its solution-end")
    cells = main
    if solutions and gathered:
        cells.append(markdown_cell(
            "## Solutions\n\nThe solutions to this chapter's exercises, collapsed: try each exercise first, then "
            "expand its solution here. *Run All* reaches these cells only after every exercise above has run "
            "with your code.", **{"jp-MarkdownHeadingCollapsed": True}))
        for label, number in info.exercises.items():
            if label not in gathered:
                continue
            back = heading_anchor(info.exercise_headings[label])
            cells.append(markdown_cell(f"### Solution to Exercise {number}\n\n[Back to Exercise {number}](#{back})"))
            cells.extend(gathered[label])
    out = nbformat.v4.new_notebook()
    out.metadata = {
        "kernelspec": dict(nb.metadata.get("kernelspec", {})),
        "language_info": {"name": "python"},
    }
    seen = Counter()
    for cell in cells:
        cell.metadata.pop("bnlib_merge", None)
        cell.id = cell_id(cell, seen)
    out.cells = cells
    nbformat.validate(out)
    return out


def gated(block: Directive, state: dict, info: ChapterInfo, emit_markdown, solutions: bool):
    """An exercise-start/-end or solution-start/-end fence: a heading, a pointer, or a switch of destination."""
    if block.name == "exercise-start":
        if "nonumber" in block.options:
            number = ""
        else:
            state["exercises"] += 1
            number = info.exercises.get(block.options.get("label"), str(state["exercises"]))
        state["exercise"] = (block.options.get("label"), number)
        level = "#" * min(6, state["level"] + 1)
        emit_markdown(f"{level} {exercise_heading(number, block.arg)}", new_cell=True)
    elif block.name == "exercise-end":
        label, number = state.pop("exercise", (None, ""))
        if solutions and label in info.solutions:
            emit_markdown(f"*A solution is in the collapsed [Solutions](#Solutions) section at the end of this "
                          f"notebook ([Solution to Exercise {number}](#Solution-to-Exercise-{number})).*")
    elif block.name == "solution-start":
        if state["solution"] is not None:
            raise ConversionError(f"{info.path.name}: a solution-start inside a solution (missing solution-end?)")
        state["solution"] = block.arg.strip() or block.options.get("label", "")
    elif block.name == "solution-end":
        if state["solution"] is None:
            raise ConversionError(f"{info.path.name}: a solution-end without its solution-start")
        state["solution"] = None


# --- entry points -------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _book(root: Path, chapters: tuple[Path, ...]) -> Book:
    return Book(root, list(chapters))


def book_for(chapters=None, root: Path = ROOT) -> Book:
    return _book(root, tuple(Path(c).resolve() for c in (chapters or toc_chapters(root))))


def launch_notebook(chapter: Path, glue: dict[str, dict], book: Book | None = None):
    """The launch notebook (Binder, Colab) of ``chapter``: solutions gathered at the end."""
    chapter = Path(chapter).resolve()
    return convert(jupytext.read(chapter), chapter, book or book_for(), glue, solutions=True)


def student_notebook(chapter: Path, glue: dict[str, dict] | None = None, book: Book | None = None, nb=None):
    """The student edition: as the launch notebook, without the solutions.

    ``nb`` may be a notebook (MyST cells, read from ``chapter`` by jupytext and perhaps changed,
    e.g. by scripts/make_student.py) to convert instead of the chapter itself.
    """
    chapter = Path(chapter).resolve()
    if glue is None:
        glue = chapter_glue(chapter)
    out = convert(nb if nb is not None else jupytext.read(chapter), chapter, book or book_for(), glue, solutions=False)
    out.metadata["bnlib"] = {"student_version_of": chapter.name}
    return out


def notebook_text(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: those in _toc.yml)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    parser.add_argument("--out", type=Path, help="write the notebooks here (default: beside the chapters)")
    parser.add_argument("--cache", type=Path, help="Jupyter Book's execution cache (default: $BNLIB_JUPYTER_CACHE or _build/.jupyter_cache)")
    args = parser.parse_args(argv)
    chapters = [p.resolve() for p in (args.chapters or toc_chapters(ROOT))]
    book = book_for()
    stale = []
    for chapter in chapters:
        start = time.perf_counter()
        glue = chapter_glue(chapter, args.cache)
        text = notebook_text(launch_notebook(chapter, glue, book))
        target = (args.out / chapter.with_suffix(".ipynb").name) if args.out else chapter.with_suffix(".ipynb")
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not args.check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        print(f"{target.name}: {len(glue)} glued values, {time.perf_counter() - start:.1f} s")
    for target in stale:
        print(f"{target}: {'out of date (run make notebooks on a built book)' if args.check else 'written'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
