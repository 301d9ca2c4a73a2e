"""UTM parameters on every http(s) link of a message, keeping existing queries and fragments.

HTML: the links are tagged while the template renders, not by scanning the rendered HTML. When an HTML
template loads, ``utm_hrefs`` rewrites each ``href`` value of its source (once, like the CSS inlining):

- ``href="{{ expr }}"`` becomes ``href="{{ (expr) | _retain_utm }}"``;
- a literal ``href="https://..."`` becomes ``href="{{ "https://..." | _retain_utm }}"``;
- any other value that may produce an http(s) URL (``https://x/{{ id }}``, ``{% if %}`` inside) is wrapped
  in ``{% filter _retain_utm %}...{% endfilter %}``; ``mailto:``, ``#top`` and relative links are left alone.

The filter reads the campaign's UTM pairs and the member's unsubscribe/preference links (left untouched)
from ``CURRENT``, which ``Renderer.render_email`` sets around the render; outside it the filter is a no-op.
Text parts and SMS are plain text: their bare URLs are tagged after rendering (``tag_text``).

Rewriting is memoised per (url, utm) so a campaign's shared links cost a dict lookup per message; a URL
seen for the first time (e.g. a per-member view-in-browser link) takes a string fast path unless it
already carries ``utm_`` keys.
"""

from __future__ import annotations

import html as html_lib
import re
from contextvars import ContextVar
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from markupsafe import Markup

_BARE_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)）。，"
_SIMPLE_URL = re.compile(r"https?://[^\s?#]+(?:\?[^\s#]*)?(?:#\S*)?")

Utm = tuple[tuple[str, str], ...]

# (utm pairs, links left untouched, that utm's tagged-URL cache) of the message being rendered; None
# outside Renderer.render_email. Set it with ``message_state``.
CURRENT: ContextVar[tuple[Utm, frozenset[str], dict[str, str]] | None] = ContextVar(
    "retain_utm", default=None
)
FILTER_NAME = "_retain_utm"

# utm -> {url or text match: the same with UTM}; a plain dict per campaign step, so a link already seen
# costs one string-keyed lookup. Bounded: per-member URLs (view in browser) would otherwise grow it.
_TAGGED: dict[tuple[Utm, str], dict[str, str]] = {}
_TAGGED_MAX = 20_000


def _cache(utm: Utm, kind: str) -> dict[str, str]:
    cache = _TAGGED.get((utm, kind))
    if cache is None:
        if len(_TAGGED) > 256:
            _TAGGED.clear()
        cache = _TAGGED[(utm, kind)] = {}
    elif len(cache) > _TAGGED_MAX:
        cache.clear()
    return cache


def message_state(utm: Utm, skip: frozenset[str]) -> tuple[Utm, frozenset[str], dict[str, str]]:
    """What ``CURRENT`` holds while one message's HTML renders."""
    return utm, skip, _cache(utm, "href")


@lru_cache(maxsize=1024)
def _encoded(utm: Utm) -> str:
    return urlencode([(key, value) for key, value in utm if value])


@lru_cache(maxsize=65_536)
def add_utm(url: str, utm: Utm, html: bool = False) -> str:
    """Add the UTM pairs to ``url`` unless it already sets them; query order and fragment are kept.

    ``html``: the url is an href value, so ``&`` between parameters is written ``&amp;``.
    """
    escaped = html or "&amp;" in url
    raw = url.replace("&amp;", "&") if escaped else url
    extra = _encoded(utm)
    if not extra:
        return url
    if "utm_" not in raw and _SIMPLE_URL.fullmatch(raw):
        # No UTM key to keep: append (what urlsplit/urlunsplit produce for such a URL, ~10x cheaper).
        base, hash_, fragment = raw.partition("#")
        base, _, query = base.partition("?")
        out = f"{base}?{query}&{extra}" if query else f"{base}?{extra}"
        if hash_ and fragment:
            out = f"{out}#{fragment}"
    else:
        parts = urlsplit(raw)
        existing = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
        extra = urlencode([(key, value) for key, value in utm if key not in existing and value])
        if not extra:
            return url
        query = f"{parts.query}&{extra}" if parts.query else extra
        out = urlunsplit(parts._replace(query=query))
    return out.replace("&", "&amp;") if escaped else out


@lru_cache(maxsize=4096)
def utm_params(campaign: str, medium: str, content: str | None) -> Utm:
    return (
        ("utm_source", "retain"),
        ("utm_medium", medium),
        ("utm_campaign", campaign or ""),
        ("utm_content", content or ""),
    )


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://")) or url[:8].lower().startswith(("http://", "https://"))


def utm_href(value: object) -> object:
    """The ``_retain_utm`` filter: ``value`` (an href) with the current message's UTM pairs.

    A plain string comes back plain (Jinja escapes it on output); markup (the body of a ``{% filter %}``
    block, already escaped) comes back as escaped markup. Non-strings (None, Undefined) pass through, so
    a missing variable still fails the render.
    """
    state = CURRENT.get()
    if state is None:
        return value
    utm, skip, cache = state
    if type(value) is str:
        if value in skip:
            return value
        tagged = cache.get(value)
        if tagged is None:
            tagged = cache[value] = add_utm(value, utm) if _is_http(value) else value
        return tagged
    if not isinstance(value, Markup):
        return value if not isinstance(value, str) else utm_href(str(value))
    markup_cache = _cache(utm, "markup")  # escaped href -> (the URL, the escaped href with UTM)
    entry = markup_cache.get(value)
    if entry is None:
        url = value.unescape()
        entry = markup_cache[value] = (url, Markup.escape(add_utm(url, utm)) if _is_http(url) else value)
    return value if entry[0] in skip else entry[1]


# ------------------------------------------------------------------------- template source rewriting

_JINJA = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL
)
_PLACEHOLDER = re.compile("\x01(\\d+)\x01")
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_EXPRESSION = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.DOTALL)


def _could_be_http(prefix: str) -> bool:
    """Could a value starting with this literal text be an http(s) URL?"""
    p = html_lib.unescape(prefix).lower()
    return p.startswith(("http://", "https://")) or "http://".startswith(p) or "https://".startswith(p)


def _jinja_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def utm_hrefs(source: str) -> str:
    """The HTML template source with every href that may be an http(s) URL passed through the UTM filter.

    Adds no line, so error line numbers stay those of the file.
    """
    if "href" not in source.lower():
        return source
    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"\x01{len(saved) - 1}\x01"

    def restore(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], text)

    def rewrite(match: re.Match[str]) -> str:
        value = match.group(2) if match.group(2) is not None else match.group(3)
        quote = '"' if match.group(2) is not None else "'"
        first = _PLACEHOLDER.search(value)
        if first is None:  # a literal URL
            url = html_lib.unescape(value)
            if not _is_http(url):
                return match.group(0)
            new = "{{ " + _jinja_string(url) + " | " + FILTER_NAME + " }}"
        elif not _could_be_http(value[: first.start()]):  # mailto:{{ ... }}, #{{ ... }}, /path/{{ ... }}
            return match.group(0)
        else:
            whole = _EXPRESSION.fullmatch(restore(value)) if first.group(0) == value else None
            if whole is not None and "{{" not in whole.group(2) and "}}" not in whole.group(2):
                new = "{{" + whole.group(1) + " (" + whole.group(2).strip() + ") | " + FILTER_NAME + " "
                new += whole.group(3) + "}}"
            else:
                new = "{% filter " + FILTER_NAME + " %}" + restore(value) + "{% endfilter %}"
        return f"{match.group(1)}{quote}{new}{quote}"

    protected = _JINJA.sub(protect, source)
    return restore(_HREF.sub(rewrite, protected))


def tag_text(text: str, utm: Utm, skip: frozenset[str]) -> str:
    """UTM on every bare http(s) URL in plain text (trailing punctuation is not part of the URL)."""
    if "http" not in text:
        return text
    cache = _cache(utm, "text")

    def repl(match: re.Match[str]) -> str:
        found = match.group(0)
        url = found.rstrip(_TRAILING)
        if url in skip:
            return found
        out = cache.get(found)
        if out is None:
            out = cache[found] = add_utm(url, utm) + found[len(url) :]
        return out

    return _BARE_URL.sub(repl, text)
