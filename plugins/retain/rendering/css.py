"""CSS inlining on the template source, once per template at load time, never per message.

Inlining every rendered email with css-inline costs ~80 µs, most of the 100 µs budget of a 10k emails/s
render. Styles depend on tags and classes, not on member data, so the HTML template *source* is inlined
once when Jinja loads it:

1. Jinja constructs are swapped for placeholders and each start tag gets a ``data-ri="N"`` marker.
2. A copy with the Jinja removed is inlined by css-inline (CSS: the ``<style>`` blocks of the layouts under
   ``layouts/`` plus the file's own), which computes each marked tag's style.
3. Only those computed ``style`` attributes are written back into the original source, compacted
   (``padding:8px;color:#111``, a property set twice kept once); its structure and Jinja are untouched.
4. The ``<style>`` blocks keep only what inlining cannot express: media queries and other @-rules, and
   rules whose selector is more than one tag or class (``a:hover``, ``.footer a``, ``td[align]``). A rule
   on a plain tag or class is on every matching tag already; sending it twice would only add bytes.

Limits (documented in docs/templates.md): selectors are matched within one file, so a descendant selector
whose ancestor sits in another file (``.footer a`` with ``.footer`` in the layout and ``a`` in a partial)
does not apply; a tag's own ``style="..."`` is kept and wins over the rules.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import css_inline

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_START_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)(?=[\s/>])")
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_STYLE_BLOCK_WHOLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.DOTALL | re.IGNORECASE)
_MARKED = re.compile(r"<[a-zA-Z][^>]*?\bdata-ri=\"(\d+)\"[^>]*>")
_STYLE_ATTR = re.compile(r"""\sstyle\s*=\s*(["'])(.*?)\1""", re.DOTALL | re.IGNORECASE)
_SKIP_TAGS = {"html", "head", "meta", "title", "style", "link", "script", "base"}


@lru_cache(maxsize=4096)
def is_html_template(name: str) -> bool:
    """HTML templates (autoescaped, CSS-inlined): ``html.j2`` and ``*.html.j2``.

    Cached: Jinja asks again for every context it creates (seven an email).
    """
    base = name.rsplit("/", 1)[-1]
    return base == "html.j2" or base.endswith(".html.j2") or base.endswith(".html")


def style_blocks(source: str) -> str:
    return "\n".join(
        block for block in _STYLE_BLOCK.findall(source) if "{{" not in block and "{%" not in block
    )


def layout_css(root: Path) -> str:
    """CSS of every HTML layout (default tree and locale variants), applied to all HTML templates."""
    parts = []
    for path in sorted(root.glob("**/layouts/*")):
        if path.is_file() and is_html_template(path.name):
            parts.append(style_blocks(path.read_text(encoding="utf-8")))
    return "\n".join(part for part in parts if part)


def inline_source(source: str, css: str) -> str:
    """The template source with computed ``style`` attributes written into its tags."""
    all_css = "\n".join(part for part in (css, style_blocks(source)) if part)
    if not all_css.strip():
        return source
    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"\x00{len(saved) - 1}\x00"

    protected = _JINJA.sub(protect, source)
    counter = iter(range(1_000_000))
    marks: dict[int, str] = {}

    def mark(match: re.Match[str]) -> str:
        tag = match.group(1).lower()
        if tag in _SKIP_TAGS:
            return match.group(0)
        n = next(counter)
        marks[n] = tag
        return f'{match.group(0)} data-ri="{n}"'

    marked = _START_TAG.sub(mark, protected)
    if not marks:
        return source
    # Analysis copy: no Jinja, no inline styles (they are kept from the original below).
    analysis = _STYLE_ATTR.sub("", _PLACEHOLDER.sub("", marked))
    if re.search(r"<html[\s>]", analysis, re.IGNORECASE):
        inlined = css_inline.CSSInliner(extra_css=all_css, keep_style_tags=False).inline(analysis)
    else:
        # Parsed inside a table cell so that partials starting with <tr> or <td> keep their tags.
        inlined = css_inline.inline_fragment(
            f"<table><tbody><tr><td>{analysis}</td></tr></tbody></table>", all_css
        )
    computed: dict[str, str] = {}
    for tag in _MARKED.finditer(inlined):
        style = _STYLE_ATTR.search(tag.group(0))
        if style and style.group(2).strip():
            computed[tag.group(1)] = compact_style(style.group(2))

    def write_back(match: re.Match[str]) -> str:
        n = match.group(1)
        return f' style="{computed[n]}"' if n in computed else ""

    def place(tag_match: re.Match[str]) -> str:
        tag = tag_match.group(0)
        n = re.search(r'data-ri="(\d+)"', tag).group(1)
        own = _STYLE_ATTR.search(tag)
        if own and n in computed:
            # Rules first, the tag's own declarations after them so they win.
            merged = f' style="{compact_style(computed[n] + ";" + own.group(2))}"'
            tag = tag[: own.start()] + merged + tag[own.end() :]
            return re.sub(r' data-ri="\d+"', "", tag)
        return re.sub(r' data-ri="(\d+)"', write_back, tag)

    result = _MARKED_PROTECTED.sub(place, marked)
    result = _STYLE_BLOCK_WHOLE.sub(_residual_block, result)
    return _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], result)


def compact_style(style: str) -> str:
    """``padding: 8px; color: red; color: blue`` -> ``padding:8px;color:blue`` (same computed style)."""
    if "\x00" in style or "{" in style:
        return style.strip()
    decls: list[str] = []
    current: list[str] = []
    quote = ""
    depth = 0
    for ch in style:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ";" and depth == 0:
            decls.append("".join(current))
            current = []
            continue
        current.append(ch)
    decls.append("".join(current))
    last: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    for decl in decls:
        prop, sep, value = decl.partition(":")
        prop, value = prop.strip(), " ".join(value.split())
        if not sep or not prop:
            if decl.strip():
                return style.strip()  # not plain declarations: leave it exactly as written
            continue
        pairs.append((prop, value))
        last[prop.lower()] = len(pairs) - 1
    important = any("!important" in v for _, v in pairs)
    return ";".join(
        f"{prop}:{value}"
        for i, (prop, value) in enumerate(pairs)
        if important or last[prop.lower()] == i  # an earlier value of the same property never applies
    )


_SIMPLE_SELECTOR = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9]*|[a-zA-Z]*\.[a-zA-Z_-][\w-]*)")
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def _inlined(selector: str) -> bool:
    """A plain tag or class selector, which the inliner writes onto every matching tag."""
    return bool(_SIMPLE_SELECTOR.fullmatch(selector)) and selector.split(".")[0].lower() not in _SKIP_TAGS


def residual_css(css: str) -> str:
    """The rules of a style sheet that inlining does not already put on the tags (see the module doc)."""
    css = _COMMENT.sub("", css)
    kept: list[str] = []
    i = 0
    while True:
        start = css.find("{", i)
        if start < 0:
            tail = css[i:].strip()
            if tail:
                kept.append(tail)
            break
        prelude = css[i:start]
        if ";" in prelude:  # @import / @charset statements before the rule
            statements, prelude = prelude.rsplit(";", 1)
            kept.append(statements.strip() + ";")
        depth, end = 0, start
        while end < len(css):
            if css[end] == "{":
                depth += 1
            elif css[end] == "}":
                depth -= 1
                if depth == 0:
                    break
            end += 1
        prelude = prelude.strip()
        selectors = [sel.strip() for sel in prelude.split(",")]
        if prelude.startswith("@") or not all(_inlined(sel) for sel in selectors):
            kept.append(f"{prelude} {css[start : end + 1].strip()}")
        i = end + 1
    return "\n".join(kept)


def _residual_block(match: re.Match[str]) -> str:
    body = match.group(2)
    if "\x00" in body:  # Jinja inside: leave it
        return match.group(0)
    rest = residual_css(body)
    return f"{match.group(1)}\n{rest}\n{match.group(3)}" if rest else ""


# Tags in the protected source may contain placeholders (\x00N\x00) but never a raw '>' from Jinja.
_MARKED_PROTECTED = re.compile(r"<[a-zA-Z][^<>]*?\bdata-ri=\"\d+\"[^<>]*>")
