"""UTM parameters on every http(s) link of a rendered message, keeping existing queries and fragments.

Rewriting is memoised per (url, utm) so a campaign's few shared links cost a dict lookup per message.
Unsubscribe and preference links are passed in ``skip`` and left exactly as they are.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_HREF_SINGLE = re.compile(r"""(\bhref\s*=\s*)(')(https?://[^']+)'""", re.IGNORECASE)
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


def _tag_href(url: str, utm: tuple[tuple[str, str], ...], skip: frozenset[str]) -> str:
    if not url.startswith(("http://", "https://")) or url in skip or url.replace("&amp;", "&") in skip:
        return url
    return add_utm(url, utm, True)


def tag_html(html: str, utm: tuple[tuple[str, str], ...], skip: frozenset[str]) -> str:
    """UTM on every ``href="http..."`` in HTML (split on the literal: ~4x faster than a regex pass)."""
    parts = html.split('href="')
    for i in range(1, len(parts)):
        part = parts[i]
        end = part.find('"')
        if end > 0:
            parts[i] = _tag_href(part[:end], utm, skip) + part[end:]
    html = 'href="'.join(parts)
    if "href='" in html or "HREF=" in html or "href =" in html:

        def repl(match: re.Match[str]) -> str:
            return f"{match.group(1)}'{_tag_href(match.group(3), utm, skip)}'"

        html = _HREF_SINGLE.sub(repl, html)
        html = re.sub(
            r'(\bhref\s*=\s*)"(https?://[^"]+)"',
            lambda m: f'{m.group(1)}"{_tag_href(m.group(2), utm, skip)}"',
            html,
            flags=re.IGNORECASE,
        )
    return html


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
