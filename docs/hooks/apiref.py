"""mkdocs hook: the API reference, generated from the code's public names and docstrings.

Theory of operation
-------------------
mkdocs (>= 1.4) loads this file through ``hooks:`` in ``mkdocs.yml``; nothing but mkdocs
itself is used (no plugin, no network). Three events:

* ``on_config`` expands the nav entry ``API reference: api/index.md`` into one entry per
  documented module, so the nav never goes stale when a module is added, and drops the
  nav entries of :data:`OPTIONAL_PAGES` (pages other branches are adding) while their
  file does not exist.
* ``on_files`` adds one generated page per module (``api/<module>.md``) and an index.
  The modules are :data:`PACKAGES` (every public submodule of the WebTransport API and of
  its Sans-I/O core, found with ``pkgutil``, so new modules get a page without an edit
  here) plus the curated public modules of ``h3`` and ``quic`` in :data:`MODULES`. A
  module's public names are its ``__all__``. Each page has the module docstring, then
  per name: the signature (``inspect.signature``), the docstring, for classes their
  public methods and properties, dataclass fields with type, default and the ``#:`` or
  ``#`` comment the source puts beside or above them, enum members with values.
* ``on_page_markdown`` replaces markers in hand-written pages with text computed from
  the code, so the guides cannot drift from it:
  ``<!-- gen:drafts -->`` (the WebTransport drafts this stack speaks, from
  :data:`pywebtransport.protocol.drafts.PROFILES`), ``<!-- gen:browsers -->`` (which
  draft each browser speaks and whether our server offers it), ``<!-- gen:help python
  -m MODULE [SUBCOMMAND] -->`` (the command's ``--help`` output, run at build time),
  ``<!-- gen:readme-commands -->`` (the README's first shell block, its two commands),
  ``<!-- gen:optional-pages -->`` (links to those of :data:`OPTIONAL_PAGES` that exist).

Docstrings are reStructuredText-flavoured: plain paragraphs become Markdown (````x````
→ ```x```, ``:class:`~a.B``` → ```B```, ``<`` escaped); paragraphs with indentation,
tables, section underlines or a ``::`` literal marker are kept verbatim in a code block,
so nothing is lost or misrendered.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # document this checkout, not an installed copy
    sys.path.insert(0, str(ROOT))

#: Packages whose public submodules all get a page (private: ``_x``, CLIs, subpackages).
PACKAGES: tuple[str, ...] = ("pywebtransport", "pywebtransport.protocol")
#: Submodule names never documented from :data:`PACKAGES`.
EXCLUDED: frozenset[str] = frozenset({"__main__", "cli", "interop", "baton"})
#: The public modules of the lower layers that applications and integrators use.
MODULES: tuple[str, ...] = (
    "h3.aio",
    "h3.connection",
    "h3.events",
    "h3.errors",
    "h3.settings",
    "h3.capsules",
    "h3.datagrams",
    "quic.aio",
    "quic.configuration",
    "quic.connection",
    "quic.endpoint",
    "quic.events",
    "quic.errors",
    "quic.stats",
    "quic.qlog",
    "quic.quiclb",
    "quic.tls.keylog",
    "quic.tls.selfsigned",
)
NAV_TITLE = "API reference"
#: Pages being written on other branches in parallel: their nav entries in mkdocs.yml are
#: dropped while the page does not exist (a nav entry to any other missing page, or a page
#: missing from the nav, still fails the strict build).
OPTIONAL_PAGES: dict[str, str] = {
    "probe.md": "[Conformance probe](probe.md): check another WebTransport server "
    "against the specifications",
    "middleware.md": "[Middleware](middleware.md): authentication, rate limits and logging "
    "per route",
    "messaging.md": "[Structured messaging](messaging.md): typed objects over streams "
    "and datagrams",
    "clients.md": "[Reconnecting clients and fleets](clients.md)",
    "webtransport-drafts.md": "[WebTransport drafts](webtransport-drafts.md): each draft, "
    "its codepoints, who speaks it",
    "interop-runner.md": "[quic-interop-runner endpoints](interop-runner.md)",
}
API_DIR = "api"


def documented_modules() -> list[str]:
    """Every module that gets a page, in nav order."""
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name.startswith("_") or info.name in EXCLUDED or info.ispkg:
                continue
            names.append(f"{package_name}.{info.name}")
    names.extend(MODULES)
    return names


def page_path(module: str) -> str:
    return f"{API_DIR}/{module}.md"


# -- docstrings -> Markdown ---------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_UNDERLINE = re.compile(r"^([=\-~^*+#])\1{2,}$")
_TABLE_RULE = re.compile(r"^=+( +=+)+$")
_ITEM = re.compile(r"^(\* |- |\d+\. )")


def _inline(text: str) -> str:
    """One reST paragraph as Markdown: literals and roles as code, the rest escaped."""
    text = _ROLE.sub(_role, text)
    out: list[str] = []
    pos = 0
    for match in _LITERAL.finditer(text):
        out.append(_escape(text[pos : match.start()]))
        out.append(_code_span(match.group(1)))
        pos = match.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _role(match: re.Match[str]) -> str:
    """``:class:`~a.b.C``` → ``C``, ``:mod:`a.b``` → ``a.b`` (reST's rule for ``~``)."""
    target = match.group(2).replace(" ", "")
    return "``" + (target.rsplit(".", 1)[-1] if match.group(1) else target) + "``"


def _code_span(code: str) -> str:
    fence = "``" if "`" in code else "`"
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{fence}{pad}{code}{pad}{fence}"


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # `*`, `_` and backquotes are literal here, and so are a leading `#` or `1.`
    text = re.sub(r"([*_`\[\]])", r"\\\1", text)
    return re.sub(r"^(\s*)(#|\d+\.\s)", r"\1\\\2", text)


def _code_block(lines: list[str], lang: str = "text") -> str:
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    return f"```{lang}\n{body}\n```"


def _list_block(lines: list[str]) -> str:
    items: list[list[str]] = []
    for line in lines:
        stripped = line.strip()
        if _ITEM.match(stripped) and not line.startswith((" ", "\t")):
            items.append([stripped])
        elif items:
            items[-1].append(stripped)
    out = []
    for item in items:
        marker = _ITEM.match(item[0])
        assert marker is not None
        bullet = "1. " if marker.group(1)[0].isdigit() else "- "
        out.append(bullet + _inline(" ".join(item)[len(marker.group(1)) :]))
    return "\n".join(out)


def docstring_markdown(doc: str | None) -> str:
    """A docstring as Markdown (see the module docstring for the rules)."""
    if not doc:
        return ""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", inspect.cleandoc(doc)) if p.strip()]
    blocks: list[str] = []
    literal_next = False
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        indented = all(line.startswith((" ", "\t")) for line in lines)
        if indented and (literal_next or (blocks and blocks[-1].startswith("```"))):
            if literal_next or not blocks[-1].startswith("```python"):
                lang = "python" if literal_next else "text"
                blocks.append(_code_block(lines, lang))
            else:
                blocks[-1] = blocks[-1][:-4] + "\n\n" + textwrap.dedent(paragraph) + "\n```"
            literal_next = False
            continue
        literal_next = False
        if (
            len(lines) >= 2
            and _UNDERLINE.match(lines[1].strip())
            and not _TABLE_RULE.match(lines[0].strip())
        ):
            blocks.append(f"**{_inline(lines[0].strip())}**")
            lines = lines[2:]
            if not lines:
                continue
        if indented or any(_TABLE_RULE.match(line.strip()) for line in lines):
            blocks.append(_code_block(lines))
        elif _ITEM.match(lines[0]):
            blocks.append(_list_block(lines))
        else:
            text = " ".join(line.strip() for line in lines)
            if text.endswith("::"):
                literal_next = True
                text = text[:-1].rstrip(":").rstrip() + (":" if text != "::" else "")
            if text:
                blocks.append(_inline(text))
    return "\n\n".join(blocks)


# -- one module page ------------------------------------------------------------------


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else str(inspect.formatannotation(annotation))


def _default(value: Any) -> str:
    """A default value as source would show it (a function by name, not its address)."""
    if inspect.isroutine(value) or inspect.isclass(value):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return repr(value)


def _param(param: inspect.Parameter) -> str:
    """One parameter as written in the source (string annotations unquoted)."""
    stars = "*" if param.kind is param.VAR_POSITIONAL else ""
    stars = "**" if param.kind is param.VAR_KEYWORD else stars
    text = stars + param.name
    if param.annotation is not param.empty:
        text += f": {_annotation(param.annotation)}"
    if param.default is not param.empty:
        text += (" = " if param.annotation is not param.empty else "=") + _default(param.default)
    return text


def _signature(obj: Callable[..., Any]) -> str:
    """The signature, one parameter per line when it is long."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    kinds = [p.kind for p in signature.parameters.values()]
    last_positional_only = _last_positional_only(kinds, signature)
    for param in signature.parameters.values():
        if (
            param.kind is param.KEYWORD_ONLY
            and "*" not in parts
            and inspect.Parameter.VAR_POSITIONAL not in kinds
        ):
            parts.append("*")
        parts.append(_param(param))
        if param.name == last_positional_only:
            parts.append("/")
    ret = signature.return_annotation
    arrow = "" if ret is inspect.Signature.empty else f" -> {_annotation(ret)}"
    text = f"({', '.join(parts)}){arrow}"
    if len(text) <= 90:
        return text
    params = ",\n".join(f"    {p}" for p in parts)
    return f"(\n{params},\n){arrow}"


def _last_positional_only(kinds: list[Any], signature: inspect.Signature) -> str:
    names = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
    return names[-1] if names else ""


def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` / ``#`` comments above or beside each annotated field, base classes first."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ == "builtins":
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        group: str | None = None
        for node in body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            row = node.lineno - 1
            above: list[str] = []
            k = row - 1
            while k >= 0 and lines[k].strip().startswith("#"):
                above.insert(0, lines[k].strip().lstrip("#:").strip())
                k -= 1
            end = (node.end_lineno or node.lineno) - 1
            beside = lines[end].partition("  # ")[2].strip() if "  # " in lines[end] else ""
            if not above and row > 0 and lines[row - 1].strip() and group is not None:
                above = [group]  # a comment above a run of fields covers the run
            group = " ".join(above) if above else None
            text = " ".join(part for part in (" ".join(above), beside) if part)
            if text:
                comments[node.target.id] = text
    return comments


def _fields(cls: type) -> list[str]:
    if not dataclasses.is_dataclass(cls):
        return []
    comments = _field_comments(cls)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f"{getattr(f.default_factory, '__name__', 'factory')}()"
        else:
            default = "required"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        cells = (f"`{f.name}`", _cell(str(kind)), _cell(default), _inline(comments.get(f.name, "")))
        rows.append("| " + " | ".join(cells) + " |")
    return rows if len(rows) > 2 else []


def _cell(text: str) -> str:
    text = text if len(text) <= 60 else text[:57] + "..."
    return _code_span(text)


def _self_assignments(tree: ast.AST) -> Iterator[str]:
    """Names ``x`` of every ``self.x = ...`` / ``self.x: T = ...`` in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                yield target.attr


def _attributes(cls: type) -> list[str]:
    """Public instance attributes: ``__slots__`` and ``self.x = ...`` in ``__init__``."""
    if dataclasses.is_dataclass(cls):
        return []
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is not cls and not klass.__name__.startswith("_"):
            continue
        slots = vars(klass).get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else list(slots))
        init = vars(klass).get("__init__")
        if inspect.isfunction(init):
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
            except (OSError, TypeError, SyntaxError):
                continue
            names.extend(_self_assignments(tree))
    members = {name for name, _ in _members(cls)}
    public = [n for n in dict.fromkeys(names) if not n.startswith("_") and n not in members]
    return sorted(public)


_DUNDERS = frozenset({"__call__", "__aiter__", "__aenter__"})


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of ``cls`` and of its private (``_X``) base classes."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is not cls and not klass.__name__.startswith("_"):
            continue
        for name, value in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in _DUNDERS):
                continue
            seen.add(name)
            if isinstance(value, (staticmethod, classmethod)):
                yield name, value.__func__
            elif isinstance(value, property) or inspect.isfunction(value):
                yield name, value


def _class_section(name: str, cls: type) -> list[str]:
    out: list[str] = []
    if issubclass(cls, enum.Enum):
        out.append(f"### `{name}` ({' · '.join(b.__name__ for b in cls.__bases__)})")
        out.append(docstring_markdown(cls.__doc__))
        rows = [f"| `{m.name}` | `{m.value!r}` |" for m in cls]
        out.append("\n".join(["| member | value |", "|---|---|", *rows]))
        return out
    bases = [b.__name__ for b in cls.__bases__ if b is not object and b.__name__[0] != "_"]
    suffix = f" ({', '.join(bases)})" if bases else ""
    out.append(f"### class `{name}`{suffix}")
    out.append(f"```python\n{name}{_signature(cls)}\n```")
    out.append(docstring_markdown(inspect.getdoc(cls) if cls.__doc__ else None))
    out.append("\n".join(_fields(cls)))
    attributes = _attributes(cls)
    if attributes:
        out.append("Attributes: " + ", ".join(f"`{a}`" for a in attributes))
    for member_name, member in _members(cls):
        if isinstance(member, property):
            out.append(f"#### `{name}.{member_name}` (property)")
            out.append(docstring_markdown(member.__doc__))
        else:
            prefix = "async " if inspect.iscoroutinefunction(member) else ""
            out.append(f"#### `{name}.{member_name}`")
            out.append(f"```python\n{prefix}def {member_name}{_signature(member)}\n```")
            out.append(docstring_markdown(member.__doc__))
    return out


def _name_section(module: ModuleType, name: str) -> list[str]:
    obj = getattr(module, name)
    if inspect.isclass(obj):
        return _class_section(name, obj)
    if inspect.isfunction(inspect.unwrap(obj)) or inspect.isbuiltin(obj):  # lru_cache too
        prefix = "async " if inspect.iscoroutinefunction(obj) else ""
        return [
            f"### `{name}()`",
            f"```python\n{prefix}def {name}{_signature(obj)}\n```",
            docstring_markdown(obj.__doc__),
        ]
    text = repr(obj)
    text = text if len(text) <= 300 else text[:297] + "..."
    return [f"### `{name}`", f"```python\n{name} = {text}\n```"]


def _home(obj: Any, module_name: str, documented: frozenset[str]) -> str | None:
    """The documented module that defines a re-exported ``obj`` (None: this one)."""
    home = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and home != module_name:
        return home if home in documented else None
    return None


def module_page(module_name: str, documented: frozenset[str] = frozenset()) -> str:
    """The Markdown page of one module; names re-exported from another documented
    module (a package's ``__init__``) link to that module's page instead of repeating."""
    module = importlib.import_module(module_name)
    names = list(getattr(module, "__all__", []))
    out = [f"# `{module_name}`", docstring_markdown(module.__doc__)]
    if names:
        out.append("## Public names")
        out.append(", ".join(f"[`{n}`](#)" for n in names))  # targets: _link_names
        out.append("## Reference")
    for name in names:
        home = _home(getattr(module, name), module_name, documented)
        if home is not None:
            out.append(f"### `{name}`")
            out.append(f"Defined in [`{home}`]({home}.md): `{home}.{name}`.")
        else:
            out.extend(_name_section(module, name))
    return "\n\n".join(block for block in out if block) + "\n"


def _heading_id(heading: str) -> str:
    """The id Python-Markdown's toc extension gives a heading (its default slugify)."""
    from markdown.extensions.toc import slugify  # type: ignore[import-untyped]

    return str(slugify(heading, "-"))


def _link_names(page: str) -> str:
    """Point the "Public names" links at their headings."""
    ids: dict[str, str] = {}
    for heading in re.findall(r"^### (.+)$", page, flags=re.M):
        match = re.search(r"`([^`]+?)(?:\(\))?`", heading)
        if match:
            text = re.sub(r"[`]", "", heading)
            ids.setdefault(match.group(1), _heading_id(text))
    return re.sub(
        r"\[`([^`]+)`\]\(#\)",
        lambda m: f"[`{m.group(1)}`](#{ids.get(m.group(1), '')})",
        page,
    )


def index_page(modules: list[str]) -> str:
    rows = ["# API reference", ""]
    rows.append(
        "Generated at build time from the code's docstrings (`docs/hooks/apiref.py`): "
        "one page per public module, its `__all__` names with their signatures."
    )
    rows.append("")
    rows.append("| module | summary |\n|---|---|")
    for name in modules:
        doc = importlib.import_module(name).__doc__ or ""
        summary = _inline(doc.strip().split("\n\n", 1)[0].replace("\n", " "))
        rows.append(f"| [`{name}`]({name}.md) | {summary} |")
    return "\n".join(rows) + "\n"


def generate() -> dict[str, str]:
    """Every generated page: path under docs/ → Markdown."""
    modules = documented_modules()
    pages = {f"{API_DIR}/index.md": index_page(modules)}
    for name in modules:
        pages[page_path(name)] = _link_names(module_page(name, frozenset(modules)))
    return pages


# -- computed sections of hand-written pages -----------------------------------------------


def drafts_table() -> str:
    """The drafts this checkout speaks, from the draft profiles."""
    from pywebtransport.protocol.drafts import PROFILES

    rows = [
        "| draft | `:protocol` token | extra CONNECT request fields | flow control | drain |",
        "|---|---|---|---|---|",
    ]
    for draft, profile in sorted(PROFILES.items()):
        fields = ", ".join(f"`{k.decode()}: {v.decode()}`" for k, v in profile.request_headers)
        rows.append(
            f"| draft-{int(draft):02d} | `{profile.protocol.decode()}` | {fields or '—'} "
            f"| {'yes' if profile.flow_control else 'no'} | {'yes' if profile.drain else 'no'} |"
        )
    return "\n".join(rows)


#: Browsers and the draft each speaks (docs/../shared/PEERS.md; issue 11 for Safari).
BROWSERS: tuple[tuple[str, int, str], ...] = (
    ("Chromium / Chrome (default)", 2, "tested here: tests/interop/test_wt_chromium.py"),
    (
        "Chromium with `--enable-features=EnableWebTransportDraft07`",
        7,
        "tested here: tests/interop/test_wt_chromium.py",
    ),
    ("Firefox (ESR 153)", 2, "tested here: tests/interop/test_wt_firefox.py"),
    ("Safari 26", 13, "not tested here (no Safari on Linux)"),
)


def browsers_table() -> str:
    """Which draft each browser speaks and whether this checkout's server offers it."""
    from pywebtransport.config import DEFAULT_DRAFTS, parse_draft

    spoken = {int(parse_draft(name)) for name in DEFAULT_DRAFTS}
    rows = ["| browser | draft it speaks | our server (defaults) | |", "|---|---|---|---|"]
    for browser, draft, note in BROWSERS:
        ours = "offered" if draft in spoken else "**not spoken by this version**"
        rows.append(f"| {browser} | draft-{draft:02d} | {ours} | {note} |")
    return "\n".join(rows)


def command_help(command: str) -> str:
    """``python -m X ... --help`` as a text block (run with this interpreter)."""
    args = command.split()
    if args[:2] != ["python", "-m"]:
        raise ValueError(f"gen:help takes 'python -m ...': {command!r}")
    result = subprocess.run(
        [sys.executable, *args[1:], "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command} --help failed: {result.stderr.strip()}")
    return f"```text\n$ {command} --help\n{result.stdout.rstrip()}\n```"


def readme_commands() -> str:
    """The README's first shell block (its first two commands), verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^```sh\n(.*?)^```", text, flags=re.M | re.S)
    if match is None:
        raise ValueError("README.md has no ```sh block")
    return f"```sh\n{match.group(1)}```"


def optional_pages() -> str:
    """A bullet list of the :data:`OPTIONAL_PAGES` that exist, with their descriptions."""
    present = [text for page, text in OPTIONAL_PAGES.items() if (ROOT / "docs" / page).exists()]
    return "\n".join(f"- {text}." for text in present)


_MARKER = re.compile(r"<!-- gen:([\w-]+)(?: ([^>]*?))? -->")


def expand_markers(markdown: str) -> str:
    """Replace every ``<!-- gen:... -->`` marker of a page with its computed text."""

    def replace(match: re.Match[str]) -> str:
        kind, arg = match.group(1), (match.group(2) or "").strip()
        if kind == "drafts":
            return drafts_table()
        if kind == "browsers":
            return browsers_table()
        if kind == "help":
            return command_help(arg)
        if kind == "readme-commands":
            return readme_commands()
        if kind == "optional-pages":
            return optional_pages()
        raise ValueError(f"unknown marker {match.group(0)}")

    expanded = _MARKER.sub(replace, markdown)
    if "<!-- gen:" in expanded:
        raise ValueError("a malformed <!-- gen:... --> marker")
    return expanded


# -- mkdocs events ----------------------------------------------------------------------


def _present(entry: Any, docs_dir: Path) -> bool:
    """False for a nav entry naming an :data:`OPTIONAL_PAGES` page that does not exist."""
    target = next(iter(entry.values())) if isinstance(entry, dict) else entry
    return not (
        isinstance(target, str) and target in OPTIONAL_PAGES and not (docs_dir / target).exists()
    )


def prune_nav(nav: list[Any], docs_dir: Path) -> list[Any]:
    """``nav`` without the entries of optional pages that do not exist (recursively)."""
    pruned: list[Any] = []
    for entry in nav:
        if isinstance(entry, dict) and len(entry) == 1:
            ((title, value),) = entry.items()
            if isinstance(value, list):
                value = prune_nav(value, docs_dir)
                if value:
                    pruned.append({title: value})
                continue
        if _present(entry, docs_dir):
            pruned.append(entry)
    return pruned


def on_config(config: Any) -> Any:
    nav = config["nav"] = prune_nav(config.get("nav") or [], Path(config["docs_dir"]))
    modules = documented_modules()
    expanded = [{"Overview": f"{API_DIR}/index.md"}] + [{m: page_path(m)} for m in modules]
    for entry in nav:
        if isinstance(entry, dict) and NAV_TITLE in entry:
            entry[NAV_TITLE] = expanded
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in generate().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand_markers(markdown)
