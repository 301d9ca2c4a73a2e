"""SMS encoding, segment counting and the opt-out rule.

A message is GSM-7 when every character is in the GSM 03.38 basic set or its extension table (extension
characters such as ``€`` ``[`` ``{`` cost two septets); anything else (Chinese, most emoji, curly quotes)
makes the whole message UCS-2, counted in UTF-16 code units (an emoji outside the BMP counts 2).
Single-part limits: 160 septets / 70 units; multipart messages carry a header: 153 / 67 per segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "\f^{}\\[~]|€"
_NOT_GSM7 = re.compile("[^" + re.escape(GSM7_BASIC + GSM7_EXTENSION) + "]")
_EXTENSION = re.compile("[" + re.escape(GSM7_EXTENSION) + "]")

# Opt-out wording required in marketing SMS, by language (the member's locale language; English otherwise).
OPT_OUT_TEXT = {
    "en": "Reply STOP to opt out",
    "zh": "回复TD退订",
    "de": "Antworte STOP zum Abmelden",
}


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def sms_info(text: str) -> SmsInfo:
    """Encoding, length in units and number of segments of one SMS body."""
    if _NOT_GSM7.search(text) is None:
        units = len(text) + len(_EXTENSION.findall(text))
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = (1 if units else 0) if units <= single else -(-units // multi)
    return SmsInfo(encoding, units, segments)


def opt_out_text(locale: str | None) -> str:
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return OPT_OUT_TEXT.get(language, OPT_OUT_TEXT["en"])


def has_opt_out(text: str, locale: str | None) -> bool:
    """True when the body carries the opt-out wording of the member's language (case-insensitive)."""
    return opt_out_text(locale).casefold() in text.casefold()
