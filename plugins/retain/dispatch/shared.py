"""SendGrid's shared send mode, used only where it is proven to give each member the same bytes.

SendGrid takes up to 1,000 personalizations per request when the content is shared and the per-member
values travel as substitutions (docs/channels.md). Which messages may go that way is checked, not
declared: for a batch of email deliveries going to a channel with ``send_shared``,

1. each message's context is built again with its per-member strings (member first/last name and id,
   every non-empty ``links.*`` URL) replaced by tokens ``-rt0-``, ``-rt1-``...; the rest of the
   context (locale, offer, products, the member fields the templates read, which fields are null) is
   the group key;
2. each group's tokenised email is rendered once; in its HTML part every token is renamed to its HTML
   twin (``-rt0h-``), whose value is the HTML-escaped one, while subject and text take the raw value;
3. every message's substitutions are applied to its group's rendering (as SendGrid does: literal keys,
   subject and content) and compared byte for byte with the message's own rendering, the one the
   dispatcher made for the ledger's content hash. Identical -> the shared request; anything else (the
   template branches on a member value, filters it, a value holds a token) -> one request per message.

Per-member headers (List-Unsubscribe) go in the personalization's headers; custom args are the
message's own. A member whose substitutions and custom args exceed 10,000 bytes (SendGrid's documented
limit per personalization for each of them; the sum is held to it) goes per message too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from markupsafe import escape

from retain.channels.base import Channel, OutgoingEmail, SendOutcome
from retain.dispatch.render import campaign_for, message_context
from retain.dispatch.types import ContextFor, DispatchSpec, Recipient
from retain.rendering import links as link_utm

log = logging.getLogger(__name__)

#: SendGrid's documented limit per personalization (custom_args; substitutions): both together held to it
MAX_PERSONALIZATION_BYTES = 10_000
TOKEN_MARK = "-rt"
SHARED_REQUESTS_IN_FLIGHT = 8
_OVERLAP = re.compile(r"-rt\d+h?-rt\d+h?-")
MEMBER_TOKEN_FIELDS = ("first_name", "last_name", "member_id")
#: links the renderer never tags with UTM pairs (environment._skip_links); the others are tagged
UNTAGGED_LINKS = ("unsubscribe", "preferences")


def token(i: int) -> str:
    return f"-rt{i}-"


def html_token(i: int) -> str:
    return f"-rt{i}h-"


def _member_fields_read(renderer: Any) -> frozenset[str] | None:
    """Member fields any template reads as ``member.<field>`` (from the Jinja syntax tree); ``None``
    when one uses ``member`` another way (then every member field is part of the group key)."""
    from jinja2 import nodes

    fields: set[str] = set()
    for path in Path(renderer.templates_dir).rglob("*.j2"):
        try:
            ast = renderer.env.parse(path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - rendering reports it; here it only widens the group key
            return None
        names = sum(1 for n in ast.find_all(nodes.Name) if n.name == "member")
        attrs = [
            n.attr
            for n in ast.find_all(nodes.Getattr)
            if isinstance(n.node, nodes.Name) and n.node.name == "member"
        ]
        if names != len(attrs):
            return None
        fields.update(attrs)
    return frozenset(fields)


_FIELDS_READ: dict[Path, frozenset[str] | None] = {}


def _fields_read(renderer: Any) -> frozenset[str] | None:
    root = Path(renderer.templates_dir)
    if root not in _FIELDS_READ:
        _FIELDS_READ[root] = _member_fields_read(renderer)
    return _FIELDS_READ[root]


def tokenised_context(
    spec: DispatchSpec,
    recipient: Recipient,
    member: Mapping[str, Any],
    context_for: ContextFor | None,
) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """The message's context as render_message builds it, tokenised (``tokenise``)."""
    return tokenise(message_context(spec, recipient, member, context_for))


def tokenise(context: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """A message's context with its per-member strings replaced by tokens, and the values the tokens
    stand for (index i <-> ``token(i)``), each with whether it is a link the renderer tags with UTM
    pairs (a token is not a URL, so the tagging moves into the value). ``context`` is not changed."""
    ctx = dict(context)
    values: list[tuple[str, bool]] = []
    m = dict(ctx["member"])
    for name in MEMBER_TOKEN_FIELDS:
        value = m.get(name)
        if isinstance(value, bool) or value is None or value == "":
            continue
        if isinstance(value, str | int):
            m[name] = token(len(values))
            values.append((str(value), False))
    ctx["member"] = m
    links = dict(ctx["links"])
    for name in sorted(links):
        if isinstance(links[name], str) and links[name]:
            values.append((links[name], name not in UNTAGGED_LINKS))
            links[name] = token(len(values) - 1)
    ctx["links"] = links
    return ctx, values


def _group_key(template: str, step: str, variant: Any, ctx: Mapping[str, Any], read: frozenset[str] | None):
    member = ctx["member"]
    kept = {
        k: (v if k in MEMBER_TOKEN_FIELDS else repr(v))
        for k, v in sorted(member.items())
        if read is None or k in read or k in MEMBER_TOKEN_FIELDS
    }
    rest = {k: v for k, v in ctx.items() if k != "member"}
    blob = json.dumps([kept, rest], sort_keys=True, default=repr, ensure_ascii=False)
    return (template, step, variant, hashlib.sha256(blob.encode()).hexdigest())


def substitutions_for(values: Sequence[tuple[str, bool]], utm: link_utm.Utm) -> dict[str, str]:
    """Raw value for the subject/text token, HTML-escaped value for its HTML twin; a tagged link gets
    the message's UTM pairs as the renderer adds them (text part and href)."""
    subs: dict[str, str] = {}
    for i, (value, tagged) in enumerate(values):
        if tagged and link_utm._is_http(value):
            subs[token(i)] = link_utm.tag_text(value, utm, frozenset())
            subs[html_token(i)] = str(escape(link_utm.add_utm(value, utm)))
        else:
            subs[token(i)] = value
            subs[html_token(i)] = str(escape(value))
    return subs


_TOKENS = re.compile(r"(-rt\d+h?-)")


def split_tokens(text: str) -> tuple[str, ...]:
    """``text`` cut around its tokens: literal text at even positions, a token at odd ones."""
    return tuple(_TOKENS.split(text))


def apply(parts: Sequence[str], subs: Mapping[str, str]) -> str:
    """What SendGrid makes of the text ``parts`` came from: every key replaced literally by its value.
    One pass over the cut text gives what SendGrid's key-by-key replacement gives, because _match
    refuses values that hold a token and _render_group refuses renderings where tokens overlap."""
    return "".join([subs.get(p, p) if i % 2 else p for i, p in enumerate(parts)])


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads that wait on the groups' shared requests (a batch has a few: one per locale and so on)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(SHARED_REQUESTS_IN_FLIGHT, thread_name_prefix="sendgrid-shared")
        return _POOL


class _Group:
    def __init__(self, subject: str, html: str, text: str) -> None:
        self.subject, self.html, self.text = subject, html, text
        self.parts = (split_tokens(subject), split_tokens(html), split_tokens(text))
        #: the tokens the content holds: a member's substitutions carry only these
        self.tokens = frozenset(t for part in self.parts for t in part[1::2])
        self.members: list[tuple[int, dict[str, str]]] = []  # (item index, substitutions)
        self.addresses: set[str] = set()


def send_with_shared(
    channel: Channel,
    items: Sequence[tuple[Any, Any, str, str]],
    contexts: Mapping[int, Mapping[str, Any]],
    spec: DispatchSpec,
    renderer: Any,
) -> list[SendOutcome]:
    """Outcomes for ``items`` (deliver's ``(row, outgoing, content_hash, address)``), same order: shared
    requests for the messages proven identical, ``channel.send_batch`` for the others. ``contexts``:
    each delivery's template context, as its own message was rendered from."""
    send_shared = getattr(channel, "send_shared", None)
    if send_shared is None or getattr(channel, "channel", None) != "email" or not items:
        return channel.send_batch([out for _, out, _, _ in items])
    from retain.channels.sendgrid import SharedContent, SharedRecipient

    read = _fields_read(renderer)
    groups: dict[tuple, _Group | None] = {}
    single: list[int] = []
    for i, (row, out, _, _) in enumerate(items):
        group = _match(row, out, contexts.get(row.id), spec, renderer, read, groups)
        address = out.to.lower() if isinstance(out, OutgoingEmail) else ""
        if group is None or address in group[0].addresses:
            single.append(i)
            continue
        group[0].addresses.add(address)
        group[0].members.append((i, group[1]))

    outcomes: list[SendOutcome | None] = [None] * len(items)
    jobs: list[tuple[Any, list[Any], dict[int, int]]] = []
    for group in groups.values():
        if group is None or not group.members:
            continue
        if len(group.members) == 1:  # one recipient: the ordinary request is the same request
            single.append(group.members[0][0])
            continue
        first: OutgoingEmail = items[group.members[0][0]][1]
        content = SharedContent(
            campaign=first.campaign,
            subject=group.subject,
            html=group.html,
            text=group.text,
            from_email=first.from_email,
            from_name=first.from_name,
            reply_to=first.reply_to,
            categories=first.categories,
        )
        recipients = []
        for i, subs in group.members:
            out = items[i][1]
            recipients.append(SharedRecipient(out.delivery_id, out.to, subs, out.custom_args, out.headers))
        jobs.append((content, recipients, {items[i][1].delivery_id: i for i, _ in group.members}))
    log.info(
        "dispatch shared mode: %s messages in %s shared groups, %s one per request",
        len(items) - len(single),
        len(jobs),
        len(single),
    )
    # The groups' requests go out together (each waits on the network); every one is waited for
    # before an error is raised, so no accepted request goes unrecorded because another one broke.
    futures = [_pool().submit(send_shared, content, recipients) for content, recipients, _ in jobs]
    error: BaseException | None = None
    if single:
        single.sort()
        try:
            sent = channel.send_batch([items[i][1] for i in single])
            for i, outcome in zip(single, sent, strict=True):
                outcomes[i] = outcome
        except Exception as exc:  # noqa: BLE001 - raised below, after the shared requests finished
            error = exc
    for (_, _, index_of), future in zip(jobs, futures, strict=True):
        try:
            for outcome in future.result():
                outcomes[index_of[outcome.delivery_id]] = outcome
        except Exception as exc:  # noqa: BLE001 - raised below
            error = error or exc
    if error is not None:
        raise error
    missing = [items[i][0].id for i, o in enumerate(outcomes) if o is None]
    if missing:
        raise RuntimeError(f"shared send returned no outcome for deliveries {missing[:10]}")
    return outcomes  # type: ignore[return-value]


def _match(
    row: Any,
    out: Any,
    context: Mapping[str, Any] | None,
    spec: DispatchSpec,
    renderer: Any,
    read: frozenset[str] | None,
    groups: dict[tuple, _Group | None],
) -> tuple[_Group, dict[str, str]] | None:
    """The message's group and substitutions when the shared rendering, substituted, is its own
    rendering byte for byte; else ``None``."""
    if context is None or not isinstance(out, OutgoingEmail) or (row.attempts or 0) > 1:
        # a message the provider did not take before is retried alone, as on the per-message path: one
        # unlucky request must not carry a whole group through all its attempts together
        return None
    recipient = Recipient(
        row.member_id, row.journey_step, row.channel, row.template or "", row.variant, None, row.is_test
    )
    ctx, values = tokenise(context)
    seen = (*(v for v, _ in values), *map(str, out.custom_args.values()), *out.headers.values())
    if any(TOKEN_MARK in v for v in seen):
        return None  # SendGrid substitutes in custom args too: a token-like value could be replaced
    key = _group_key(recipient.template, recipient.journey_step, recipient.variant, ctx, read)
    if key not in groups:
        groups[key] = _render_group(renderer, spec, recipient, ctx, len(values))
    group = groups[key]
    if group is None:
        return None
    utm = link_utm.utm_params(spec.campaign, "email", recipient.journey_step or recipient.template)
    subs = substitutions_for(values, utm)
    # JSON writes a character in at most 6 bytes (\uXXXX): only a member near the limit is measured exactly
    bound = 6 * sum(len(k) + len(v) + 4 for d in (subs, out.custom_args) for k, v in d.items())
    if bound > MAX_PERSONALIZATION_BYTES and (
        len(json.dumps(subs).encode()) + len(json.dumps(dict(out.custom_args)).encode())
        > MAX_PERSONALIZATION_BYTES
    ):
        return None
    subject, html, text = group.parts
    if apply(subject, subs) != out.subject or apply(text, subs) != out.text or apply(html, subs) != out.html:
        return None
    return group, {k: v for k, v in subs.items() if k in group.tokens}


def _render_group(
    renderer: Any, spec: DispatchSpec, recipient: Recipient, ctx: Mapping[str, Any], n_tokens: int
) -> _Group | None:
    try:
        email = renderer.render_email(
            recipient.template, ctx, campaign_for(spec, recipient.journey_step, recipient.variant)
        )
    except Exception:  # noqa: BLE001 - a template that cannot take tokens: its messages go one by one
        return None
    html = email.html
    for i in range(n_tokens):
        html = html.replace(token(i), html_token(i))
    if any(_OVERLAP.search(part) for part in (email.subject, html, email.text)):
        return None  # "-rt0-rt1-": the result would depend on the order SendGrid substitutes in
    return _Group(email.subject, html, email.text)
