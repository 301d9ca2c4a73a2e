"""The sandboxed Jinja environment and the renderer the send path calls.

One ``Renderer`` per process and templates folder (``get_renderer``): Jinja compiles each template once and
keeps it; HTML sources are CSS-inlined once as they load (``css.inline_source``) and their hrefs routed
through the UTM filter (``links.utm_hrefs``). Per message the work is the three template renders (links get
their UTM pairs as they are written, memoised per URL), the text part's URL pass and, for SMS, the segment
count. See docs/benchmarks.md ("Rendering") for where the time goes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from retain import config
from retain.rendering import css, formatting, links, sms
from retain.rendering.context import DATE_LOCALE_KEY, LOCALE_KEY, Campaign

LOCALES_DIR = "locales"
DEFAULT_TREE_LOCALE = "en-US"


class RenderError(ValueError):
    """A message could not be produced (bad template, SMS over its segment limit, opt-out missing)."""


def _finalize(value: object) -> object:
    # A null column prints as nothing, never as "None".
    return "" if value is None else value


try:  # the C escaper markupsafe.escape wraps (and then turns into a Markup object, ~0.3 µs a value)
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - the pure-Python build of markupsafe
    from markupsafe._native import _escape_inner


def _html_output(value: object) -> str:
    """``escape(finalize(value))`` for one ``{{ ... }}`` of an HTML template, as a plain string.

    Same text as Jinja's ``markupsafe.escape`` (``&#34;``, ``&#39;``, markup objects kept as they are),
    without building a ``Markup`` object for a value that is only ever joined into the output.
    """
    if type(value) is str:
        return _escape_inner(value)
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value.__html__()
    return _escape_inner(str(value))


def _text_output(value: object) -> str:
    """``str(finalize(value))`` for one ``{{ ... }}`` of a subject, text part or SMS."""
    if type(value) is str:
        return value
    return "" if value is None else str(value)


class RetainCodeGenerator(CodeGenerator):
    """Two changes to the Python Jinja writes for a template, same output:

    - each ``{{ ... }}`` is one call (``_html_output`` / ``_text_output``) instead of Jinja's
      ``escape(environment.finalize(...))`` / ``str(environment.finalize(...))``: 43 values an email,
      about 0.3 µs each;
    - an include passes its output on with ``yield from`` (``visit_Include``).

    Everything else, including ``{% autoescape %}`` blocks, is Jinja's own code."""

    def _fast_output(self, frame: Frame) -> bool:
        return self.environment.finalize is _finalize and not frame.eval_ctx.volatile

    def _output_child_pre(self, node, frame, finalize):  # type: ignore[no-untyped-def]
        if not self._fast_output(frame):
            return super()._output_child_pre(node, frame, finalize)
        html = frame.eval_ctx.autoescape
        self.write("environment.html_output(" if html else "environment.text_output(")

    def _output_child_post(self, node, frame, finalize):  # type: ignore[no-untyped-def]
        if not self._fast_output(frame):
            return super()._output_child_post(node, frame, finalize)
        self.write(")")

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        """``{% include "name" %}``: the included template's output is passed on with ``yield from``
        (Jinja writes a ``for event in gen: yield event`` loop: a Python-level step per piece of output).
        Any other form of include (a buffer, ``ignore missing``, ``without context``) is Jinja's own."""
        if (
            node.ignore_missing
            or not node.with_context
            or self.environment.is_async
            or frame.buffer is not None
            or not (isinstance(node.template, nodes.Const) and isinstance(node.template.value, str))
        ):
            return super().visit_Include(node, frame)
        self.writeline("template = environment.get_template(", node)
        self.visit(node.template, frame)
        self.write(f", {self.name!r})")
        self.writeline(
            "yield from template.root_render_func(template.new_context(context.get_all(), True, "
            f"{self.dump_local_context(frame)}))"
        )


@pass_context
def _money(ctx: Context, amount: object, currency: str | None = None) -> str:
    if currency is None:
        member = ctx.get("member") or {}
        currency = member.get("currency") if isinstance(member, Mapping) else None
    return formatting.format_money(amount, currency or "USD", ctx.get(LOCALE_KEY))


@pass_context
def _date(ctx: Context, value: object, format: str = "medium") -> str:  # noqa: A002 - Babel's name
    # A named format is the member's locale's whole date; a pattern ("MMMM d") was written in the
    # template's language, so its month and day names are too (see date_locale).
    named = format in ("short", "medium", "long", "full")
    locale = ctx.get(LOCALE_KEY) if named else ctx.get(DATE_LOCALE_KEY) or ctx.get(LOCALE_KEY)
    return formatting.format_date_value(value, format, locale)


@pass_context
def _number(ctx: Context, value: object) -> str:
    return formatting.format_number(value, ctx.get(LOCALE_KEY))


FILTERS = {"money": _money, "date_": _date, "number": _number}


class InliningLoader(FileSystemLoader):
    """Reads ``templates/``; HTML sources come back with their CSS inlined (once: Jinja caches the result)."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), encoding="utf-8")
        self.root = Path(root)
        self._css: str | None = None

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if css.is_html_template(template):
            if self._css is None:
                self._css = css.layout_css(self.root)
            source = css.inline_source(source, self._css)
        return source, filename, uptodate


class RetainLoader(InliningLoader):
    """What Retain's environment reads: CSS inlined, then every http(s) href through the UTM filter."""

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if css.is_html_template(template):
            source = links.utm_hrefs(source)
        return source, filename, uptodate


def locale_chain(locale: str | None, default_locale: str | None = None) -> list[str]:
    """``zh-CN`` -> [zh-CN, zh, <campaign default>, its language]; the default tree comes after these."""
    chain: list[str] = []
    for tag in (locale, default_locale):
        if not tag:
            continue
        tag = tag.replace("_", "-")
        for candidate in (tag, tag.split("-")[0]):
            if candidate not in chain:
                chain.append(candidate)
    return chain


def date_locale(template_name: str, member_locale: str | None) -> str | None:
    """The locale for date patterns when a template in another language than the member's was chosen
    (no ``ja-JP`` templates: the default tree's English), else None (the member's). A Japanese member
    reading the English "Ends {{ date_(d, 'MMMM d') }}" sees "December 12", not "12月 12" among English
    words; named formats (``long``...), money and numbers keep the member's conventions."""
    if not member_locale:
        return None
    parts = template_name.split("/")
    written_in = parts[1] if parts[0] == LOCALES_DIR and len(parts) > 2 else DEFAULT_TREE_LOCALE
    same = (
        written_in.replace("_", "-").split("-")[0].lower()
        == member_locale.replace("_", "-").split("-")[0].lower()
    )
    return None if same else written_in


class RetainEnvironment(SandboxedEnvironment):
    """Includes and extends inside a locale variant look in the same locale folder first.

    Contract objects are plain dicts: ``member.first_name`` is served from the dict's items first, which
    skips the AttributeError round-trip of Jinja's attribute-then-item lookup (about 10% of a render) and
    can reach nothing but data. Anything else goes through the sandbox's checks unchanged.

    More per-render savings, none visible to a template: a template's globals are a plain dict (Jinja's
    default ChainMap costs ~3 µs to copy into every context, of which an email makes seven); calling
    Retain's own formatting functions (``money(...)``) skips the sandbox's callable inspection; the locale
    lookup of an include's path is done once per (include, file), not per render.
    """

    code_generator_class = RetainCodeGenerator
    html_output = staticmethod(_html_output)
    text_output = staticmethod(_text_output)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._joined: dict[tuple[str, str], str] = {}  # join_path runs for every include of every render

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Snapshot: the environment's globals are complete before the first template loads.
        return {**self.globals, **(d or {})}

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if (__obj is _money or __obj is _date or __obj is _number) and not (
            kwargs.get("_loop_vars") or kwargs.get("_block_vars")
        ):
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            return __obj(__context, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def join_path(self, template: str, parent: str) -> str:
        key = (template, parent)
        found = self._joined.get(key)
        if found is None:
            found = self._joined[key] = self._join_path(template, parent)
        return found

    def _join_path(self, template: str, parent: str) -> str:
        if parent.startswith(LOCALES_DIR + "/") and not template.startswith(LOCALES_DIR + "/"):
            locale = parent.split("/")[1]
            for candidate in locale_chain(locale):
                name = f"{LOCALES_DIR}/{candidate}/{template}"
                if name in self.known_names():
                    return name
        return template

    @lru_cache(maxsize=1)  # noqa: B019 - one environment per process, lives as long as it
    def known_names(self) -> frozenset[str]:
        return frozenset(self.loader.list_templates()) if self.loader else frozenset()


def make_environment(templates_dir: Path) -> RetainEnvironment:
    env = RetainEnvironment(
        loader=RetainLoader(Path(templates_dir)),
        undefined=StrictUndefined,
        autoescape=css.is_html_template,
        finalize=_finalize,
        auto_reload=False,
        cache_size=-1,
        keep_trailing_newline=False,
        # Block tags on their own line leave no blank line behind (matters for text parts and SMS).
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.filters[links.FILTER_NAME] = links.utm_href
    env.globals.update(
        FILTERS
    )  # {{ p.price | money(p.currency) }} and {{ money(p.price, p.currency) }} both work
    return env


@dataclass(frozen=True)
class RenderedEmail:
    template: str
    subject: str
    html: str
    text: str
    sources: tuple[str, str, str]  # the files used for subject, html, text (after locale fallback)


@dataclass(frozen=True)
class RenderedSms:
    template: str
    text: str
    encoding: str
    segments: int
    source: str


class Renderer:
    """Renders one campaign's emails and SMS; thread-safe once templates are loaded."""

    def __init__(self, templates_dir: Path | str | None = None) -> None:
        self.templates_dir = Path(templates_dir) if templates_dir is not None else config.templates_dir()
        self.env = make_environment(self.templates_dir)
        self._resolved: dict[tuple[str, str | None, str | None], str] = {}
        # (path, locale, default) -> (file, compiled template, date locale when not the member's language):
        # one dict lookup per part per message.
        self._templates: dict[tuple[str, str | None, str | None], tuple[str, Template, str | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, path: str, locale: str | None, default_locale: str | None = None) -> str:
        """The file to use for ``path`` (e.g. ``email/birthday/html.j2``) after the locale fallback chain."""
        key = (path, locale, default_locale)
        found = self._resolved.get(key)
        if found is not None:
            return found
        names = self.env.known_names()
        for candidate in locale_chain(locale, default_locale):
            name = f"{LOCALES_DIR}/{candidate}/{path}"
            if name in names:
                found = name
                break
        else:
            if path not in names:
                raise TemplateNotFound(path)
            found = path
        with self._lock:
            self._resolved[key] = found
        return found

    def _render(self, path: str, context: Mapping[str, Any], default_locale: str | None) -> tuple[str, str]:
        key = (path, context.get(LOCALE_KEY), default_locale)
        found = self._templates.get(key)
        if found is None:
            name = self.resolve(*key)
            found = (name, self.env.get_template(name), date_locale(name, key[1]))
            with self._lock:
                self._templates[key] = found
        name, template, written_in = found
        if written_in is not None:  # month and day names in the language of the words around them
            context = {**context, DATE_LOCALE_KEY: written_in}
        return name, template.render(context)

    def render_email(self, name: str, context: Mapping[str, Any], campaign: Campaign) -> RenderedEmail:
        """Subject (one line), HTML (CSS inlined, UTM on links) and text part (always present)."""
        utm = links.utm_params(campaign.name, "email", campaign.step or name)
        skip = _skip_links(context)
        subject_name, subject = self._render(f"email/{name}/subject.j2", context, campaign.default_locale)
        # The HTML's hrefs take their UTM pairs while it renders (links.utm_href reads CURRENT).
        token = links.CURRENT.set(links.message_state(utm, skip))
        try:
            html_name, html = self._render(f"email/{name}/html.j2", context, campaign.default_locale)
        finally:
            links.CURRENT.reset(token)
        text_name, text = self._render(f"email/{name}/text.j2", context, campaign.default_locale)
        subject = " ".join(subject.split())
        text = text.strip()
        if not text:
            raise RenderError(f"email {name}: the text part rendered empty ({text_name})")
        return RenderedEmail(
            name,
            subject,
            html,
            links.tag_text(text, utm, skip),
            (subject_name, html_name, text_name),
        )

    def render_sms(self, name: str, context: Mapping[str, Any], campaign: Campaign) -> RenderedSms:
        """One SMS, checked: at most ``campaign.max_sms_segments`` and, if marketing, the opt-out text."""
        source, body = self._render(f"sms/{name}.j2", context, campaign.default_locale)
        # Babel writes "10,00 €" with a no-break space and ja-JP yen as fullwidth "￥": neither is GSM-7, and
        # one of them would make the whole SMS UCS-2 (70 characters a segment instead of 160).
        body = " ".join(body.translate(_SMS_NORMALISE).split())
        utm = links.utm_params(campaign.name, "sms", campaign.step or name)
        body = links.tag_text(body, utm, _skip_links(context))
        info = sms.sms_info(body)
        if info.segments > campaign.max_sms_segments:
            raise RenderError(
                f"sms {name} ({source}): {info.segments} {info.encoding} segments ({info.units} units), "
                f"campaign maximum is {campaign.max_sms_segments}"
            )
        # The opt-out must be in the language the SMS is written in: the locale folder it came from.
        locale = source.split("/")[1] if source.startswith(LOCALES_DIR + "/") else DEFAULT_TREE_LOCALE
        if campaign.marketing and not sms.has_opt_out(body, locale):
            raise RenderError(
                f"sms {name} ({source}): marketing SMS must contain the opt-out text "
                f"{sms.opt_out_text(locale)!r} (language of {source})"
            )
        return RenderedSms(name, body, info.encoding, info.segments, source)


_SMS_NORMALISE = str.maketrans({"\u00a0": " ", "\u202f": " ", "\uffe5": "¥"})


def _skip_links(context: Mapping[str, Any]) -> frozenset[str]:
    link_map = context.get("links") or {}
    return frozenset(u for u in (link_map.get("unsubscribe"), link_map.get("preferences")) if u)


_RENDERERS: dict[Path, Renderer] = {}
_RENDERERS_LOCK = threading.Lock()


def get_renderer(templates_dir: Path | str | None = None) -> Renderer:
    """The process-wide renderer for a templates folder (compiled templates are cached inside it)."""
    path = Path(templates_dir) if templates_dir is not None else config.templates_dir()
    key = path.resolve()
    with _RENDERERS_LOCK:
        renderer = _RENDERERS.get(key)
        if renderer is None:
            renderer = _RENDERERS[key] = Renderer(key)
        return renderer
