"""Email and SMS rendering: sandboxed Jinja templates under ``templates/``, the context contract, locale
fallback, Babel formatting, CSS inlining, UTM links, SMS segments and validation before any send.

See docs/templates.md for the layout and the contract.
"""

from retain.rendering.context import CONTRACT, Campaign, build_context
from retain.rendering.environment import (
    RenderedEmail,
    RenderedSms,
    Renderer,
    RenderError,
    get_renderer,
    locale_chain,
)
from retain.rendering.sms import sms_info
from retain.rendering.validation import (
    TemplateValidationError,
    ValidationReport,
    check_templates,
    validate_templates,
)

__all__ = [
    "CONTRACT",
    "Campaign",
    "RenderError",
    "RenderedEmail",
    "RenderedSms",
    "Renderer",
    "TemplateValidationError",
    "ValidationReport",
    "build_context",
    "check_templates",
    "get_renderer",
    "locale_chain",
    "sms_info",
    "validate_templates",
]
