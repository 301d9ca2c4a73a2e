"""What a member receives: escaping, locale fallback, money per locale, CSS inlined, UTM links, SMS counts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from retain.cli import app
from retain.rendering import Campaign, Renderer, build_context, check_templates, locale_chain, sms_info
from retain.rendering.formatting import format_money
from retain.rendering.links import add_utm, utm_params

from .conftest import FIXTURE_TEMPLATES, full_context, member

SCRIPT = "<script>alert(1)</script>"


def test_member_data_is_inert_in_html_and_plain_in_text(fixture_renderer, campaign):
    email = fixture_renderer.render_email(
        "welcome", full_context(member(first_name=SCRIPT), campaign), campaign
    )
    assert SCRIPT not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert f"Hello {SCRIPT}," in email.text  # text parts are not HTML: no entity soup
    assert SCRIPT in email.subject


def test_text_part_is_always_present(fixture_renderer, campaign):
    email = fixture_renderer.render_email("welcome", full_context(member(), campaign), campaign)
    assert email.text.startswith("Retain Shop") and "Hello Emma," in email.text


def test_null_fields_render_as_nothing_not_none(fixture_renderer, campaign):
    row = member(first_name=None)
    email = fixture_renderer.render_email("welcome", full_context(row, campaign), campaign)
    assert "None" not in email.subject + email.text + email.html


def test_locale_chain():
    assert locale_chain("zh-CN") == ["zh-CN", "zh"]
    assert locale_chain("zh_TW", "de-DE") == ["zh-TW", "zh", "de-DE", "de"]


@pytest.mark.parametrize(
    ("locale", "default", "expected"),
    [
        ("zh-CN", "en-US", "locales/zh/email/welcome/subject.j2"),  # no zh-CN subject: language folder
        ("zh-TW", "en-US", "locales/zh/email/welcome/subject.j2"),
        ("de-DE", "en-US", "locales/de-DE/email/welcome/subject.j2"),
        ("ja-JP", "en-US", "email/welcome/subject.j2"),  # nothing for ja: the default tree
        ("ja-JP", "de-DE", "locales/de-DE/email/welcome/subject.j2"),  # campaign default before the tree
        ("fr-FR", None, "email/welcome/subject.j2"),
    ],
)
def test_locale_fallback(fixture_renderer, locale, default, expected):
    assert fixture_renderer.resolve("email/welcome/subject.j2", locale, default) == expected


def test_rendered_email_uses_the_locale_variant(fixture_renderer, campaign):
    email = fixture_renderer.render_email("welcome", full_context(member("zh-CN"), campaign), campaign)
    assert email.subject == "欢迎磊！您的Retain Shop礼物"
    assert email.sources[0] == "locales/zh/email/welcome/subject.j2"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", {"CNY": "CN¥300.00", "USD": "$42.00", "EUR": "€42.00", "JPY": "¥1,200"}),
        ("zh-CN", {"CNY": "¥300.00", "USD": "US$42.00", "EUR": "€42.00", "JPY": "JP¥1,200"}),
        ("de-DE", {"CNY": "300,00\xa0CN¥", "USD": "42,00\xa0$", "EUR": "42,00\xa0€", "JPY": "1.200\xa0¥"}),
    ],
)
def test_money_per_locale_and_currency(locale, expected):
    amounts = {"CNY": 300, "USD": Decimal("42"), "EUR": 42.0, "JPY": 1200}
    assert {cur: format_money(amounts[cur], cur, locale) for cur in expected} == expected


def test_money_filter_uses_the_member_locale(make_templates):
    root = make_templates(
        {"sms/m.j2": "{{ 42 | money('EUR') }} {{ member.monetary | money }} Reply STOP to opt out"}
    )
    campaign = Campaign("c")
    row = member("de-DE", monetary=Decimal("1234.5"))
    sms = Renderer(root).render_sms("m", build_context(row, campaign), campaign)
    assert sms.text.startswith("42,00 € 1.234,50 €")  # no-break spaces made plain for GSM-7
    assert sms.encoding == "GSM-7"


def test_dates_follow_the_language_of_the_template_money_the_member(make_templates):
    """No Japanese or French templates: those members get the English one, and its date pattern reads
    "December 12" (Babel's ja month name inside English words read "12月 12"); money and named date formats
    (test_dates_and_numbers_per_locale) keep the member's conventions. A member whose language has
    templates gets their own locale's month names."""
    sms = "Ends {{ date_(ends, 'MMMM d') }}: {{ 6.5 | money('EUR') }} off. Reply STOP to opt out"
    root = make_templates(
        {
            "sms/d.j2": sms,
            "locales/de-DE/sms/d.j2": "Endet am {{ date_(ends, 'd. MMMM') }}. Antworte STOP zum Abmelden",
        }
    )
    campaign = Campaign("c")
    renderer = Renderer(root)

    def text(locale: str) -> str:
        ctx = {**build_context(member(locale), campaign), "ends": date(2026, 12, 12)}
        return renderer.render_sms("d", ctx, campaign).text

    assert text("ja-JP").startswith("Ends December 12: €6.50 off.")
    assert text("fr-FR").startswith("Ends December 12: 6,50 € off.")  # French money, English date
    assert text("en-US").startswith("Ends December 12: €6.50 off.")
    assert text("de-DE").startswith("Endet am 12. Dezember.")
    assert text("de-AT").startswith("Ends December 12: € 6,50 off.")  # no de-AT or de folder: English


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension table: 2 septets each
        ("€" + "a" * 159, "GSM-7", 2),
        ("中" * 70, "UCS-2", 1),
        ("中" * 71, "UCS-2", 2),
        ("中" * 134, "UCS-2", 2),
        ("中" * 135, "UCS-2", 3),
        ("a" * 60 + "😀", "UCS-2", 1),  # emoji forces UCS-2 and counts 2 units
        ("a" * 69 + "😀", "UCS-2", 2),
        ("", "GSM-7", 0),
    ],
)
def test_sms_segments(text, encoding, segments):
    info = sms_info(text)
    assert (info.encoding, info.segments) == (encoding, segments)


def test_euro_counts_two_septets():
    assert sms_info("€").units == 2 and sms_info("{}").units == 4 and sms_info("é").units == 1


def test_utm_keeps_query_and_fragment():
    utm = utm_params("spring", "email", "day0")
    assert (
        add_utm("https://s.example.com/p?ref=rec#reviews", utm)
        == "https://s.example.com/p?ref=rec&utm_source=retain&utm_medium=email&utm_campaign=spring"
        "&utm_content=day0#reviews"
    )
    assert add_utm("https://s.example.com/?utm_source=x", utm).count("utm_source") == 1
    assert add_utm("https://s.example.com/?a=1&amp;b=2", utm).startswith(
        "https://s.example.com/?a=1&amp;b=2&amp;"
    )


def test_email_links_carry_utm_but_unsubscribe_is_untouched(fixture_renderer, campaign):
    email = fixture_renderer.render_email("welcome", full_context(member(), campaign), campaign)
    assert 'href="https://shop.example.com/?src=mail&amp;utm_source=retain&amp;utm_medium=email' in email.html
    assert "utm_campaign=spring_welcome&amp;utm_content=day0#top" in email.html
    assert 'href="https://shop.example.com/u/1000001?t=abc123"' in email.html
    assert "Unsubscribe: https://shop.example.com/u/1000001?t=abc123\n" in email.text + "\n"
    assert "https://shop.example.com/p/vitamin-c-serum?utm_source=retain&utm_medium=email" in email.text


def test_utm_fast_path_writes_what_urlsplit_writes():
    from urllib.parse import urlsplit, urlunsplit

    utm = utm_params("spring", "email", "day0")
    extra = "utm_source=retain&utm_medium=email&utm_campaign=spring&utm_content=day0"
    for url in [
        "https://s.example.com",
        "https://s.example.com/",
        "https://s.example.com/p/1?",
        "https://s.example.com/p/1#",
        "https://s.example.com/p/1?#frag",
        "https://s.example.com/p/1?a=1&b=#f?x",
        "http://s.example.com:8080/p%20q/?a=%C3%A9",
        "https://s.example.com/#/app?x=1",
    ]:
        parts = urlsplit(url)
        query = f"{parts.query}&{extra}" if parts.query else extra
        assert add_utm(url, utm) == urlunsplit(parts._replace(query=query)), url


def test_every_http_href_is_tagged_whatever_its_form(make_templates, campaign):
    root = make_templates(
        {
            "email/links/subject.j2": "Links",
            "email/links/text.j2": "Shop: {{ links.shop }}",
            "partials/macros.html.j2": ('{% macro card(url) %}<a href="{{ url }}">card</a>{% endmacro %}'),
            "email/links/html.j2": (
                '{% from "partials/macros.html.j2" import card %}<html><body>\n'
                "<a href='https://a.example/x'>single</a>\n"
                '<a HREF = "https://b.example/y?q=1&amp;r=2#f">spaced</a>\n'
                '<a href="https://c.example/m/{{ member.member_id }}?n={{ member.first_name }}">mixed</a>\n'
                '<a href="{% if offer %}https://d.example/offer{% else %}https://d.example/none{% endif %}">'
                "branch</a>\n"
                '<a href="{{ links.shop }}">shop</a>\n'
                '<a href="{{ links.unsubscribe }}">unsubscribe</a>\n'
                '<a href="{% if member %}{{ links.unsubscribe }}{% endif %}">unsubscribe in a branch</a>\n'
                '<a href="{{ links.preferences }}">preferences</a>\n'
                '<a href="mailto:{{ brand.support_email }}">mail</a> <a href="#top">top</a>\n'
                '<a href="/relative">relative</a>\n'
                "{{ card(links.view_in_browser) }}\n"
                "</body></html>"
            ),
        }
    )
    ctx = full_context(member(first_name='Zoë "Z" & co'), campaign)
    html = Renderer(root).render_email("links", ctx, campaign).html
    utm = "utm_source=retain&amp;utm_medium=email&amp;utm_campaign=spring_welcome&amp;utm_content=day0"
    assert f"href='https://a.example/x?{utm}'" in html
    assert f'"https://b.example/y?q=1&amp;r=2&amp;{utm}#f"' in html
    assert f'href="https://c.example/m/1000001?n=Zoë &#34;Z&#34; &amp; co&amp;{utm}"' in html
    assert f'href="https://d.example/offer?{utm}"' in html
    assert f'href="https://shop.example.com/?src=mail&amp;{utm}#top"' in html
    assert html.count('href="https://shop.example.com/u/1000001?t=abc123"') == 2
    assert 'href="https://shop.example.com/prefs/1000001?t=abc123"' in html
    assert 'href="mailto:help@shop.example.com"' in html and 'href="#top"' in html
    assert 'href="/relative"' in html
    assert f'href="https://shop.example.com/v/1000001?{utm}"' in html  # inside an imported macro
    assert html.count("utm_source=retain") == 6


def test_an_undefined_variable_in_an_href_is_reported_on_its_line(make_templates, campaign):
    root = make_templates(
        {
            "email/bad/subject.j2": "Bad",
            "email/bad/text.j2": "Text",
            "email/bad/html.j2": '<p>ok</p>\n<p>ok</p>\n<a href="{{ links.shop }}{{ nope }}">x</a>\n',
        }
    )
    report = check_templates(root)
    assert any(
        p.template == "email/bad/html.j2" and p.line == 3 and p.variable == "nope" for p in report.problems
    )


def test_css_is_inlined_once_per_template(make_templates, monkeypatch, campaign):
    from retain.rendering import css

    calls = []
    original = css.inline_source
    monkeypatch.setattr(
        css, "inline_source", lambda source, sheet: calls.append(1) or original(source, sheet)
    )
    renderer = Renderer(FIXTURE_TEMPLATES)
    for row in [member(), member("de-DE"), member("zh-CN")] * 5:
        email = renderer.render_email("welcome", full_context(row, campaign), campaign)
        assert 'style="padding:8px;text-align:center" class="card"' in email.html
        assert '<p style="font-weight:bold;color:#c0392b" class="price">' in email.html
        assert "@media" in email.html  # media queries stay in the <style> block for clients that read them
    assert len(calls) == 4  # html.j2, the layout and two partials: once each, not per message


def test_a_tags_own_style_wins_and_jinja_in_tags_survives():
    from retain.rendering.css import inline_source

    out = inline_source(
        '<td class="c" style="color: blue" data-x="{{ a > b }}">'
        "{% for x in y %}<tr>{{ x }}</tr>{% endfor %}</td>",
        ".c { color: red; padding: 1px }",
    )
    assert out == (
        '<td class="c" style="padding:1px;color:blue" data-x="{{ a > b }}">'
        "{% for x in y %}<tr>{{ x }}</tr>{% endfor %}</td>"
    )


def test_style_block_keeps_only_what_inlining_cannot_express():
    from retain.rendering.css import inline_source

    sheet = (
        "p { color: red; } .note { font-size: 12px; } a:hover { color: blue; } .box a { color: green; } "
        "@media (max-width: 600px) { .note { font-size: 16px !important; } }"
    )
    out = inline_source(
        f'<html><head><style>{sheet}</style></head><body><p class="note">Hi <a href="#">x</a></p>'
        "</body></html>",
        "",
    )
    assert '<p style="color:red;font-size:12px" class="note">' in out
    style = out.split("<style>")[1].split("</style>")[0]
    assert "a:hover" in style and ".box a" in style and "@media" in style and "16px !important" in style
    assert "color: red" not in style and "font-size: 12px" not in style  # already on the tags


def test_preview_prints_subject_text_sms_and_writes_html(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(FIXTURE_TEMPLATES))
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(tmp_path / "none.duckdb"))
    out = tmp_path / "p.html"
    result = CliRunner().invoke(app, ["preview", "welcome", "--member", "1000002", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Subject: Willkommen, Felix!" in result.output
    assert "Hello Felix," in result.output
    assert "Antworte STOP zum Abmelden" in result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_preview_of_unknown_member_exits_1(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(FIXTURE_TEMPLATES))
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(tmp_path / "none.duckdb"))
    result = CliRunner().invoke(app, ["preview", "welcome", "--member", "42"])
    assert result.exit_code == 1 and "member 42" in result.output


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "Jul 31, 2026 | July 31, 2026 | 1,234.5"),
        ("zh-CN", "2026年7月31日 | 2026年7月31日 | 1,234.5"),
        ("de-DE", "31.07.2026 | 31. Juli 2026 | 1.234,5"),
    ],
)
def test_dates_and_numbers_per_locale(make_templates, locale, expected):
    root = make_templates(
        {
            "sms/d.j2": "{{ offer.expires_at | date_ }} | {{ member.last_order_at | date_('long') }} | "
            "{{ member.monetary | number }} Reply STOP to opt out"
        }
    )
    campaign = Campaign("c")
    row = member(locale, last_order_at=datetime(2026, 7, 31, 23, 0), monetary=Decimal("1234.5"))
    ctx = build_context(row, campaign, offer={"code": "X", "expires_at": date(2026, 7, 31)})
    text = Renderer(root).render_sms("d", ctx, Campaign("c", marketing=False)).text
    assert text.startswith(expected)


def test_a_locale_variant_extends_and_includes_its_own_locale_layout_and_partials(make_templates):
    block = "{% block content %}{% endblock %}\n\n"  # trim_blocks eats the first newline
    extends = '{% extends "layouts/base_email.text.j2" %}{% block content %}'
    sign = '{% include "partials/sign.j2" %}{% endblock %}'
    root = make_templates(
        {
            "layouts/base_email.text.j2": block + "Unsubscribe: {{ links.unsubscribe }}",
            "locales/zh-CN/layouts/base_email.text.j2": block + "退订：{{ links.unsubscribe }}",
            "partials/sign.j2": "The team",
            "locales/zh/partials/sign.j2": "团队",
            "email/hi/subject.j2": "Hi",
            "email/hi/html.j2": "<p>Hi</p>",
            "email/hi/text.j2": extends + "Hi. " + sign,
            "locales/zh-CN/email/hi/text.j2": extends + "你好。" + sign,
        }
    )
    campaign = Campaign("c")
    renderer = Renderer(root)
    zh = renderer.render_email("hi", build_context(member("zh-CN"), campaign), campaign)
    en = renderer.render_email("hi", build_context(member("en-US"), campaign), campaign)
    assert zh.text.startswith("你好。团队\n退订：")  # zh-CN layout, zh partial (language fallback)
    assert en.text == "Hi. The team\nUnsubscribe:"


def test_formatters_work_as_filters_and_as_functions(make_templates):
    root = make_templates(
        {
            "sms/f.j2": "{{ money(42, 'EUR') }}|{{ 42 | money('EUR') }}|{{ number(1234) }} "
            "Reply STOP to opt out"
        }
    )
    campaign = Campaign("c")
    assert check_templates(root).ok
    sms = Renderer(root).render_sms("f", build_context(member("de-DE"), campaign), campaign)
    assert sms.text.startswith("42,00 €|42,00 €|1.234 ")


def test_babel_spaces_and_fullwidth_yen_do_not_force_ucs2_in_sms(make_templates):
    root = make_templates(
        {"sms/y.j2": "{{ 1200 | money('JPY') }} {{ 42 | money('EUR') }} Reply STOP to opt out"}
    )
    campaign = Campaign("c")
    sms = Renderer(root).render_sms("y", build_context(member("ja-JP"), campaign), campaign)
    assert sms.text == "¥1,200 €42.00 Reply STOP to opt out"
    assert sms.encoding == "GSM-7"


def test_includes_in_loops_macros_and_ignore_missing_render_like_jinja(make_templates, campaign):
    root = make_templates(
        {
            "partials/card.html.j2": "<b>{{ p.name }} {{ money(p.price, p.currency) }}</b>",
            "email/inc/subject.j2": "Inc",
            "email/inc/text.j2": "{% for p in products %}{% include 'partials/card.html.j2' %}{% endfor %}",
            "email/inc/html.j2": (
                "{% macro twice(p) %}{% include 'partials/card.html.j2' %}"
                "{% include 'partials/card.html.j2' %}{% endmacro %}"
                "{% for p in products[:1] %}[{% include 'partials/card.html.j2' %}]{{ twice(p) }}{% endfor %}"
                "{% include 'partials/missing.html.j2' ignore missing %}end"
            ),
        }
    )
    email = Renderer(root).render_email("inc", full_context(member("de-DE"), campaign), campaign)
    card = "<b>Hydrating Face Cream 50 ml 29,90\xa0€</b>"
    assert email.html == f"[{card}]{card}{card}end"
    assert email.text.startswith(
        "<b>Hydrating Face Cream 50 ml 29,90\xa0€</b><b>Vitamin C Serum 45,00\xa0€</b>"
    )
