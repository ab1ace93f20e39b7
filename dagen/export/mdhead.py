"""The top of the Markdown report: the verdict, every claim, and the deployment in brief.

A reviewer reads the first screen only, so it carries the whole answer: ✓ only when no
finding is an error or a warning and every claim holds; each claim with its target,
estimate, bound and verdict; the model, world, workload and key figures in one table.
The claims are read off the findings (their ``data``), so a plan that did not build
shows its bound-only verdicts the same way. Each claim's arithmetic is written once,
under "Claims"; the Findings table gives its one-sentence verdict.

Example:
    >>> head = headline(findings, has_graph=True)  # doctest: +SKIP
    >>> head["line"]  # doctest: +SKIP
    '**⚠ 2 of 3 claims fail**: no check found an error; 2 warning(s). See Claims.'
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dagen.export.estimate import key_figures
from dagen.findings import Finding, Severity, count
from dagen.plan.model import Model, Parallel, Workload

__all__ = [
    "claim_rows",
    "facts",
    "finding_message",
    "headline",
    "is_claim",
    "verdict",
]

_MARKS = {"holds": "✓ holds", "fails": "✗ fails", "impossible": "✗ impossible"}


def is_claim(f: Finding) -> bool:
    """Whether ``f`` is a verdict on a claim (its ``data`` carries the verdict)."""
    return "verdict" in f.data and "claim" in f.data


def finding_message(f: Finding) -> str:
    """What the Findings table shows: a claim's verdict sentence (its arithmetic is under
    Claims), any other finding's whole message."""
    return f.headline()[0] + " Arithmetic under Claims." if is_claim(f) else f.message


def _amount(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    x = float(value)
    if unit == "fraction":
        return f"{x:.1%}"
    return f"{x:,.0f} {unit}" if abs(x) >= 100 else f"{x:.4g} {unit}"


def _bound(value: Any, unit: str, at_least: bool) -> str:
    """``≥ 9.9 ms`` (the floor of an at-most claim: times, memory) or ``≤ 2,418 …`` (the
    ceiling of an at-least claim: throughput, utilisation)."""
    if value is None:
        return "—"
    return ("≤ " if at_least else "≥ ") + _amount(value, unit)


def _verdict_rows(est: Any) -> list[dict[str, str]]:
    """Rows from an estimate's verdicts, for a report given no findings."""
    rows = []
    for v in getattr(est, "verdicts", ()):
        unit = str(v.unit)
        rows.append(
            {
                "claim": str(v.claim),
                "target": _amount(v.target, unit),
                "estimate": _amount(v.estimate, unit),
                "bound": _bound(v.bound, unit, bool(v.at_least)),
                "verdict": _MARKS.get(str(v.verdict), str(v.verdict)),
                "arithmetic": str(v.arithmetic),
                "code": "",
            }
        )
    return rows


def claim_rows(findings: tuple[Finding, ...], est: Any = None) -> list[dict[str, str]]:
    """One row per claim: the claim, target, estimate, bound, verdict and arithmetic; from
    the findings, else (none is a claim) from the estimate's verdicts."""
    if not any(is_claim(f) for f in findings):
        return _verdict_rows(est)
    rows = []
    for f in findings:
        if not is_claim(f):
            continue
        d, unit = f.data, str(f.data.get("unit", ""))
        verdict = str(d["verdict"])
        rows.append(
            {
                "claim": str(d["claim"]),
                "target": _amount(d.get("target"), unit),
                "estimate": _amount(d.get("estimate"), unit),
                "bound": _bound(d.get("bound"), unit, bool(d.get("at_least"))),
                "verdict": _MARKS.get(verdict, verdict),
                "arithmetic": f.headline()[1],
                "code": f.code,
            }
        )
    return rows


def _verb(kind: str, n: int) -> str:
    """``1 holds``, ``2 hold``; ``impossible`` and ``unverified`` do not change."""
    return kind[:-1] if n > 1 and kind.endswith("s") else kind


def verdict(findings: tuple[Finding, ...], has_graph: bool, est: Any = None) -> tuple[str, str]:
    """(mark, text): ✓ only when no finding is an error or a warning and every claim holds;
    ✗ with errors or no graph; ⚠ otherwise. Plain text, for every picture and report.

    Example:
        >>> verdict((), has_graph=True)
        ('✓', 'Every check passes')
    """
    claims = claim_rows(findings, est)
    errors = sum(f.severity is Severity.ERROR for f in findings)
    warnings = sum(f.severity is Severity.WARNING for f in findings)
    kinds = Counter(r["verdict"].split(" ")[-1] for r in claims)
    if not (errors or warnings or set(kinds) - {"holds"} or not has_graph):
        n = len(claims)
        tail = (f" and all {n} claims hold" if n > 1 else " and its claim holds") if n else ""
        return "✓", f"Every check passes{tail}"
    parts = [f"{count(errors, 'error')}, {count(warnings, 'warning')}"]
    if claims:
        order = ("impossible", "fails", "unverified", "holds")
        said = ", ".join(f"{kinds[k]} {_verb(k, kinds[k])}" for k in sorted(kinds, key=order.index))
        parts.insert(0, f"claims: {said}")
    if not has_graph:
        parts.insert(0, "not built")
    text = "; ".join(parts)
    return ("✗" if errors or not has_graph else "⚠"), text[0].upper() + text[1:]


def headline(findings: tuple[Finding, ...], has_graph: bool, est: Any = None) -> dict[str, Any]:
    """The verdict line and the claims table of the report's first screen."""
    mark, text = verdict(findings, has_graph, est)
    line = f"**{mark} {text}.**" + ("" if mark == "✓" else " Details under Findings and Claims.")
    return {"line": line, "claims": claim_rows(findings, est)}


def _model(m: Model) -> str:
    text = f"{m.layers} layers, hidden {m.hidden_size}, {m.heads} heads ({m.kv_heads} kv), "
    text += f"FFN {m.ffn_size}, vocab {m.vocab_size}, {m.dtype.value}"
    if m.moe is not None:
        text += f"; MoE {m.moe.experts} experts, top-{m.moe.top_k}, FFN {m.moe.expert_ffn_size}"
        if m.moe.shared_experts:
            text += f", {m.moe.shared_experts} shared"
    return text


def _world(p: Parallel, moe: bool) -> str:
    attn = f"TP{p.tp}·CP{p.cp}·DP{p.attn_dp()}·PP{p.pp}"
    if not moe:
        return f"{p.world()} GPUs = {attn} (dense: no expert layers)"
    return f"{p.world()} GPUs = {attn} (attention) = ETP{p.etp}·EP{p.ep}·EDP{p.edp()}·PP{p.pp} (experts)"


def _workload(w: Workload) -> str:
    text = f"{w.phase.value}, batch {w.batch}, prompt {w.prompt_len}, {w.gen_len} generated, "
    text += f"{w.micro_batches} micro-batch(es) per replica"
    if w.decode_steps > 1:
        text += f", {w.decode_steps} decode steps unrolled"
    return text


def facts(model: Model, parallel: Parallel, workload: Workload, est: Any) -> list[tuple[str, str]]:
    """(label, text) rows of the deployment in brief; the model name is left to the
    template, which escapes it."""
    rows = [
        ("Model", _model(model)),
        ("World", _world(parallel, model.moe is not None)),
        ("Workload", _workload(workload)),
    ]
    if figures := key_figures(est):
        rows.append(("Estimate", " · ".join(figures)))
    return rows
