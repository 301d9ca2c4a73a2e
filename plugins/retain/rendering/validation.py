"""Validate every template before anything is sent: statically against the context contract, then by
rendering every template for every shipped locale against sample members (and, for a template a campaign
file sends with an offer, with that offer's terms for each sample member's tier).

``validate_templates`` is what the send path calls before the first message of a run; it raises
``TemplateValidationError`` listing each problem with template file, line and variable, so a broken template
sends nothing. ``retain templates validate`` prints the same report.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError

from retain import config
from retain.rendering.context import (
    CONTRACT,
    LIST_NAMES,
    SAMPLE_MEMBERS,
    Campaign,
    sample_contexts,
    warehouse_members,
)
from retain.rendering.environment import (
    DEFAULT_TREE_LOCALE,
    LOCALES_DIR,
    Renderer,
    RenderError,
)

if TYPE_CHECKING:
    from retain.campaigns.models import Offer

EMAIL_PARTS = ("subject.j2", "html.j2", "text.j2")


@dataclass(frozen=True)
class Problem:
    template: str  # file under the templates folder, e.g. locales/zh-CN/email/birthday/html.j2
    line: int | None
    variable: str | None
    message: str
    sample: str | None = None  # which sample context showed it (None: static analysis)

    def __str__(self) -> str:
        where = f"{self.template}:{self.line}" if self.line else self.template
        var = f" [{self.variable}]" if self.variable else ""
        sample = f" (rendering {self.sample})" if self.sample else ""
        return f"{where}{var}: {self.message}{sample}"


@dataclass
class TemplateResult:
    channel: str  # email | sms
    name: str
    locales: list[str]
    renders: int = 0
    max_segments_seen: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class ValidationReport:
    templates_dir: Path
    locales: list[str]
    samples_from: str  # "warehouse <path>" or "fixtures"
    results: list[TemplateResult]
    static_problems: list[Problem]

    @property
    def problems(self) -> list[Problem]:
        # One line per problem: a rendering failure on a line static analysis already flagged is the same one.
        flagged = {(p.template, p.line) for p in self.static_problems}
        seen: dict[tuple, Problem] = {}
        for problem in [*self.static_problems, *(p for r in self.results for p in r.problems)]:
            if problem.sample is not None and (problem.template, problem.line) in flagged:
                continue
            seen.setdefault((problem.template, problem.line, problem.variable, problem.message), problem)
        return list(seen.values())

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        width = max([len("template"), *(len(f"{r.channel}/{r.name}") for r in self.results)])
        lines = [
            f"Templates in {self.templates_dir} "
            f"(locales: {', '.join(self.locales)}; samples: {self.samples_from})",
            f"{'template':<{width}}  {'renders':>7}  {'sms seg':>7}  status",
            f"{'-' * width}  {'-' * 7}  {'-' * 7}  ------",
        ]
        for r in self.results:
            seg = str(r.max_segments_seen) if r.channel == "sms" else "-"
            status = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
            lines.append(f"{r.channel + '/' + r.name:<{width}}  {r.renders:>7}  {seg:>7}  {status}")
        if not self.results:
            lines.append("(no templates found)")
        return "\n".join(lines)


class TemplateValidationError(RuntimeError):
    """Raised before any send when a template is broken; ``problems`` has file, line and variable each."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        self.problems = report.problems
        listed = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"{len(self.problems)} template problem(s) in {report.templates_dir}; nothing was sent:\n"
            f"{listed}{more}"
        )


# ---------------------------------------------------------------------------------------------- discovery


def shipped_locales(templates_dir: Path) -> list[str]:
    """The default tree's locale (en-US) plus every folder under ``locales/``."""
    found = sorted(p.name for p in (templates_dir / LOCALES_DIR).glob("*") if p.is_dir())
    return [DEFAULT_TREE_LOCALE, *(loc for loc in found if loc != DEFAULT_TREE_LOCALE)]


def discover(templates_dir: Path) -> tuple[list[str], list[str]]:
    """Email names (folders under email/) and SMS names (sms/*.j2), in the default tree or any locale."""
    roots = [templates_dir, *(p for p in (templates_dir / LOCALES_DIR).glob("*") if p.is_dir())]
    emails = {p.name for root in roots for p in (root / "email").glob("*") if p.is_dir()}
    sms_names = {p.name[: -len(".j2")] for root in roots for p in (root / "sms").glob("*.j2") if p.is_file()}
    return sorted(emails), sorted(sms_names)


# ------------------------------------------------------------------------------------------ static checks


def _base_name(node: nodes.Node) -> str | None:
    """``products`` for ``products``, ``products[:3]``, ``products|batch(2)``."""
    while isinstance(node, nodes.Getitem | nodes.Filter | nodes.Getattr):
        node = node.node
    return node.name if isinstance(node, nodes.Name) else None


def _bindings(ast: nodes.Template) -> tuple[set[str], dict[str, str]]:
    """Names a template binds (for, set, with targets) and which of them loop over a contract list."""
    bound: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.find_all(nodes.For | nodes.Assign | nodes.AssignBlock | nodes.With):
        targets = node.targets if isinstance(node, nodes.With) else [node.target]
        for target in targets:
            found = [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))
            bound.update(n.name for n in found)
        if isinstance(node, nodes.For) and isinstance(node.target, nodes.Name):
            base = _base_name(node.iter)
            if base in LIST_NAMES:
                aliases[node.target.name] = base
    return bound, aliases


def static_problems(
    renderer: Renderer,
    name: str,
    *,
    partial_names: set[str] = frozenset(),
    partial_aliases: dict[str, str] | None = None,
) -> list[Problem]:
    """Syntax, undeclared names, attributes outside the contract, and any ``_private`` attribute.

    A partial (``partials/...``) may use a name its includer binds (``{% for product in products %}
    {% include "partials/card.html.j2" %}``): ``partial_names`` are the names bound anywhere in the tree,
    ``partial_aliases`` those bound to a contract list's items. Rendering still checks the real use.
    """
    env = renderer.env
    try:
        source, filename, _ = env.loader.get_source(env, name)
        ast = env.parse(source, name, filename)
    except TemplateSyntaxError as exc:
        return [Problem(name, exc.lineno, None, f"syntax error: {exc.message}")]
    except TemplateError as exc:
        return [Problem(name, None, None, f"{type(exc).__name__}: {exc}")]
    problems = []
    allowed = set(CONTRACT) | set(env.globals)
    is_partial = "partials/" in name
    if is_partial:
        allowed |= set(partial_names)
    undeclared = meta.find_undeclared_variables(ast) - allowed
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared:
            problems.append(
                Problem(name, node.lineno, node.name, f"'{node.name}' is not in the context contract")
            )
            undeclared.discard(node.name)
    # Loop variables over a contract list (e.g. ``{% for p in products %}``) take the list's item fields.
    item_aliases = dict(partial_aliases or {}) if is_partial else {}
    item_aliases.update(_bindings(ast)[1])
    for node in ast.find_all(nodes.Getattr | nodes.Getitem):
        attr = node.attr if isinstance(node, nodes.Getattr) else None
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            attr = node.arg.value
        if attr is None:
            continue
        if attr.startswith("_"):
            problems.append(Problem(name, node.lineno, attr, f"access to '{attr}' is not allowed"))
            continue
        if not isinstance(node.node, nodes.Name):
            continue
        base = node.node.name
        if base in item_aliases:
            fields, label = CONTRACT[item_aliases[base]], f"{item_aliases[base]} item"
        elif base in CONTRACT and base not in LIST_NAMES:
            fields, label = CONTRACT[base], base
        else:
            continue
        if attr not in fields:
            problems.append(
                Problem(
                    name, node.lineno, f"{base}.{attr}", f"'{attr}' is not a field of {label} in the contract"
                )
            )
    return problems


# ------------------------------------------------------------------------------------------ render checks

_UNDEFINED_VAR = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


def _template_frame(exc: BaseException, templates_dir: Path) -> tuple[str | None, int | None]:
    """The innermost template file and line of a rendering error (Jinja rewrites tracebacks to them)."""
    root = str(templates_dir.resolve())
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2") or frame.filename.startswith(root):
            path = Path(frame.filename)
            try:
                rel = path.resolve().relative_to(root).as_posix()
            except ValueError:
                rel = frame.filename
            found = (rel, frame.lineno)
    return found


def _problem_from(exc: BaseException, fallback: str, templates_dir: Path, sample: str) -> Problem:
    if isinstance(exc, TemplateSyntaxError):
        return Problem(exc.name or fallback, exc.lineno, None, f"syntax error: {exc.message}", sample)
    template, line = _template_frame(exc, templates_dir)
    variable = None
    if isinstance(exc, UndefinedError | SecurityError):
        match = _UNDEFINED_VAR.search(str(exc))
        if match:
            variable = match.group(1) or match.group(2)
    kind = "undefined" if isinstance(exc, UndefinedError) else type(exc).__name__
    return Problem(template or fallback, line, variable, f"{kind}: {exc}", sample)


def _is_campaign_variant(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Getattr):
        return node.attr == "variant" and isinstance(node.node, nodes.Name) and node.node.name == "campaign"
    if isinstance(node, nodes.Getitem):
        return (
            isinstance(node.arg, nodes.Const)
            and node.arg.value == "variant"
            and isinstance(node.node, nodes.Name)
            and node.node.name == "campaign"
        )
    return False


def _string_consts(node: nodes.Node) -> set[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, nodes.Tuple | nodes.List):
        return {c.value for c in node.items if isinstance(c, nodes.Const) and isinstance(c.value, str)}
    return set()


def variant_literals(ast: nodes.Template) -> set[str]:
    """Variant names a template branches on: ``campaign.variant == "b"``, ``!=``, ``in ("a", "b")``."""
    found: set[str] = set()
    for cmp in ast.find_all(nodes.Compare):
        operands = [cmp.expr, *(op.expr for op in cmp.ops)]
        if any(_is_campaign_variant(o) for o in operands):
            for operand in operands:
                found |= _string_consts(operand)
    return found


_TEMPLATE_OF = re.compile(r"^(?:locales/[^/]+/)?(?:email/(?P<email>[^/]+)/|sms/(?P<sms>[^/]+)\.j2$)")


def template_offers(
    campaigns_dir: Path | str | None = None,
) -> dict[tuple[str, str], list[tuple[str, Offer]]]:
    """{(channel, template): [(campaign name, offer), ...]}: the offers the campaign files send with each
    template (per step and variant). A file that does not parse is left out (``retain campaigns validate``
    reports it); only the file's own structure is read, never the warehouse."""
    import yaml
    from pydantic import ValidationError

    from retain.campaigns.models import Campaign as CampaignFile
    from retain.campaigns.models import campaign_files

    found: dict[tuple[str, str], list[tuple[str, Offer]]] = {}
    folder = Path(campaigns_dir) if campaigns_dir is not None else config.campaigns_dir()
    for path in campaign_files(folder):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                continue
            campaign = CampaignFile.model_validate({**raw, "name": path.stem})
        except (OSError, yaml.YAMLError, ValidationError):
            continue
        for step in campaign.step_list():
            for variant in [None, *campaign.variants]:
                offer = campaign.offer_for(step, variant)
                if offer is None:
                    continue
                for channel, template in campaign.channels_for(step, variant).items():
                    listed = found.setdefault((channel, template), [])
                    if (campaign.name, offer) not in listed:
                        listed.append((campaign.name, offer))
    return found


def _with_locale(member: Mapping[str, Any], locale: str) -> dict[str, Any]:
    return {**member, "locale": locale}


def check_templates(
    templates_dir: Path | str | None = None,
    *,
    members: Iterable[Mapping[str, Any]] | None = None,
    warehouse: Path | str | None = None,
    max_sms_segments: int = 2,
    variants: Mapping[tuple[str, str], Iterable[str]] | None = None,
    offers: Mapping[tuple[str, str], Iterable[tuple[str, Offer]]] | None = None,
) -> ValidationReport:
    """Validate without raising; see ``validate_templates``. Each template also renders once per A/B
    variant it branches on (``campaign.variant == "b"`` in its files, layouts or partials) and per
    variant in ``variants`` ({(channel, template): names}, e.g. from the campaign files using it), and
    with each of its ``offers`` ({(channel, template): [(campaign, offer)]}; default: the campaign files'
    in ``RETAIN_CAMPAIGNS_DIR``, ``template_offers()``) as each sample member's tier gets it."""
    templates_dir = Path(templates_dir) if templates_dir is not None else config.templates_dir()
    renderer = Renderer(templates_dir)
    locales = shipped_locales(templates_dir)
    if members is not None:
        sample_members, samples_from = list(members), "given members"
    else:
        wh = Path(warehouse) if warehouse is not None else config.warehouse_path()
        sample_members = warehouse_members(wh)
        samples_from = f"warehouse {wh}" if sample_members else "fixtures"
        if not sample_members:
            sample_members = SAMPLE_MEMBERS

    static: list[Problem] = []
    if not templates_dir.is_dir():
        static.append(Problem(str(templates_dir), None, None, "templates folder not found"))
        return ValidationReport(templates_dir, locales, samples_from, [], static)
    names = sorted(renderer.env.list_templates(filter_func=lambda n: n.endswith(".j2")))
    bound: set[str] = set()
    aliases: dict[str, str] = {}
    shared_variants: set[str] = set()
    variants_of: dict[tuple[str, str], set[str]] = {key: set(v) for key, v in (variants or {}).items()}
    for name in names:
        try:
            source, filename, _ = renderer.env.loader.get_source(renderer.env, name)
            ast = renderer.env.parse(source, name, filename)
        except TemplateError:
            continue  # reported by static_problems below
        tree_bound, tree_aliases = _bindings(ast)
        bound |= tree_bound
        aliases.update(tree_aliases)
        literals = variant_literals(ast)
        match = _TEMPLATE_OF.match(name)
        if literals and match:
            key = ("email", match["email"]) if match["email"] else ("sms", match["sms"])
            variants_of.setdefault(key, set()).update(literals)
        else:
            shared_variants |= literals  # a layout or partial: every template may take that branch
    for name in names:
        static.extend(static_problems(renderer, name, partial_names=bound, partial_aliases=aliases))

    # Every member once per shipped locale (exercises each locale variant with varied data), and once with
    # their own locale (exercises the fallback chain, e.g. ja-JP -> default tree).
    members_by_locale = [
        (locale, [_with_locale(m, locale) for m in sample_members]) for locale in locales
    ] + [("own", sample_members)]

    offers_of = template_offers() if offers is None else {key: list(v) for key, v in offers.items()}
    emails, sms_names = discover(templates_dir)
    results = []
    for channel, names in (("email", emails), ("sms", sms_names)):
        for name in names:
            result = TemplateResult(channel, name, locales)
            results.append(result)
            declared = sorted(variants_of.get((channel, name), set()) | shared_variants)
            for variant, (_, group) in [(v, g) for v in ["", *declared] for g in members_by_locale]:
                campaign = Campaign(
                    name=f"validate_{name}",
                    journey=name,
                    step=name,
                    variant=variant,
                    max_sms_segments=max_sms_segments,
                )
                for label, ctx in sample_contexts(group, campaign, offers_of.get((channel, name), ())):
                    sample = f"{label}, locale {ctx['_locale']}"
                    if variant:
                        sample += f", variant {variant}"
                    try:
                        if channel == "email":
                            renderer.render_email(name, ctx, campaign)
                        else:
                            rendered = renderer.render_sms(name, ctx, campaign)
                            result.max_segments_seen = max(result.max_segments_seen, rendered.segments)
                        result.renders += 1
                    except RenderError as exc:
                        result.problems.append(Problem(f"{channel}/{name}", None, None, str(exc), sample))
                    except Exception as exc:  # noqa: BLE001 - any template failure is a validation failure
                        path = f"email/{name}" if channel == "email" else f"sms/{name}.j2"
                        result.problems.append(_problem_from(exc, path, templates_dir, sample))
    return ValidationReport(templates_dir, locales, samples_from, results, static)


def validate_templates(
    templates_dir: Path | str | None = None,
    *,
    members: Iterable[Mapping[str, Any]] | None = None,
    warehouse: Path | str | None = None,
    max_sms_segments: int = 2,
    variants: Mapping[tuple[str, str], Iterable[str]] | None = None,
    offers: Mapping[tuple[str, str], Iterable[tuple[str, Offer]]] | None = None,
) -> ValidationReport:
    """Call before the first message of a run. Raises TemplateValidationError (file, line, variable of each
    problem) when any template fails the contract or fails to render for any shipped locale."""
    report = check_templates(
        templates_dir,
        members=members,
        warehouse=warehouse,
        max_sms_segments=max_sms_segments,
        variants=variants,
        offers=offers,
    )
    if not report.ok:
        raise TemplateValidationError(report)
    return report
