"""UTM parameters on every http(s) link of a rendered message, keeping existing queries and fragments.

Rewriting is memoised per (url, utm) so a campaign's few shared links cost a dict lookup per message.
Unsubscribe and preference links are passed in ``skip`` and left exactly as they are.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)）。，"


@lru_cache(maxsize=65_536)
def add_utm(url: str, utm: tuple[tuple[str, str], ...], html: bool = False) -> str:
    """Add the UTM pairs to ``url`` unless it already sets them; query order and fragment are kept.

    ``html``: the url is an href value, so ``&`` between parameters is written ``&amp;``.
    """
    escaped = html or "&amp;" in url
    raw = url.replace("&amp;", "&") if escaped else url
    parts = urlsplit(raw)
    existing = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    extra = urlencode([(key, value) for key, value in utm if key not in existing and value])
    if not extra:
        return url
    query = f"{parts.query}&{extra}" if parts.query else extra
    out = urlunsplit(parts._replace(query=query))
    return out.replace("&", "&amp;") if escaped else out


def utm_params(campaign: str, medium: str, content: str | None) -> tuple[tuple[str, str], ...]:
    return (
        ("utm_source", "retain"),
        ("utm_medium", medium),
        ("utm_campaign", campaign or ""),
        ("utm_content", content or ""),
    )


def tag_html(html: str, utm: tuple[tuple[str, str], ...], skip: frozenset[str]) -> str:
    """UTM on every ``href="http..."`` in HTML."""

    def repl(match: re.Match[str]) -> str:
        url = match.group(3)
        if url in skip or url.replace("&amp;", "&") in skip:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{add_utm(url, utm, True)}{match.group(2)}"

    return _HREF.sub(repl, html)


def tag_text(text: str, utm: tuple[tuple[str, str], ...], skip: frozenset[str]) -> str:
    """UTM on every bare http(s) URL in plain text (trailing punctuation is not part of the URL)."""
    if "http" not in text:
        return text

    def repl(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:
            url, tail = url[:-1], url[-1] + tail
        if url in skip:
            return match.group(0)
        return add_utm(url, utm) + tail

    return _BARE_URL.sub(repl, text)
