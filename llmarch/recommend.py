"""``llmarch recommend``: check candidates against a profile, rank, explain.

Constraints
    Checked in a fixed order (local, open weights, context, memory, decode
    speed, TTFT, TPOT, quality per task, cost); the first that fails is the
    reason shown. A figure that is unknown fails its constraint: llmarch
    does not recommend what it cannot check.

Score (candidates that pass)
    Each weighted figure is scored against the best among the passing
    candidates: higher-is-better figures (quality, decode tokens/s) as
    value / best; lower-is-better ones (TTFT, memory, cost) as best / value
    (1 when both are 0). An unknown figure scores 0. The score is the
    weighted mean, from 0 to 1. Scores within ``TIE`` share a rank.

Pareto front
    Among all candidates whose quality, decode tokens/s and memory are known
    (quality is the profile's quality figure; without quality tasks the
    front is over speed and memory): those no other candidate matches or
    beats on every figure while beating on one.

How sure
    The top pick's lead is tested against run-to-run noise: its figures are
    moved one standard deviation (quality: one standard error) against it
    and the runner-up's in its favour. ``high``: measured, and the lead
    holds; ``medium``: measured, but within noise, or a tie; ``low``: the
    pick rests on estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llmarch.candidates import Candidate, Figure
from llmarch.profiles import Profile

TIE = 1e-9
GB = 1e9


@dataclass
class Check:
    """One constraint on one candidate."""

    name: str  # the constraint's field name, e.g. max_memory_gb
    limit: Any
    value: Any  # in the constraint's unit
    basis: str
    passed: bool
    text: str  # e.g. "1.69 GB <= 4 GB"


@dataclass
class Ranked:
    """A candidate with its checks, score, rank and front membership."""

    candidate: Candidate
    checks: list[Check]
    quality: Figure
    score: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    rank: int | None = None
    pareto: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)


SHORT = {
    "local_only": "local",
    "open_weights": "open weights",
    "min_context": "context",
    "max_memory_gb": "memory",
    "min_decode_tps": "decode",
    "max_ttft_ms": "TTFT",
    "max_tpot_ms": "TPOT",
    "max_cost_per_mtok": "cost",
}


def short_name(constraint: str) -> str:
    """``max_memory_gb`` -> ``memory``; ``min_quality.arc-easy`` -> ``arc-easy``."""
    return SHORT.get(constraint, constraint.removeprefix("min_quality."))


def _num(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:,.0f}"


def _mark(f: Figure) -> str:
    return "~" if f.basis == "estimated" else ""


def quality_figure(cand: Candidate, profile: Profile) -> Figure:
    """The mean of the profile's quality tasks (unknown if any is missing)."""
    keys = profile.scored_tasks()
    if not keys:
        return Figure(None, "n/a", "the profile names no quality tasks")
    found = [cand.quality.get(k) for k in keys]
    if any(f is None or not f.known for f in found):
        missing = [k for k, f in zip(keys, found, strict=True) if f is None]
        return Figure(None, "unknown", f"no result for {', '.join(missing)}")
    values = [f.value for f in found]  # type: ignore[union-attr]
    errors = [f.spread or 0.0 for f in found]  # type: ignore[union-attr]
    return Figure(
        sum(values) / len(values),  # type: ignore[arg-type]
        "measured",
        "mean of " + ", ".join(keys),
        math.sqrt(sum(e * e for e in errors)) / len(errors),
    )


def check(cand: Candidate, profile: Profile) -> list[Check]:
    """Every constraint of the profile on one candidate, in the fixed order."""
    c = profile.constraints
    out: list[Check] = []

    def limit_check(name, limit, fig: Figure, scale, unit, higher_ok: bool) -> None:
        if limit is None:
            return
        if fig.basis == "n/a" and name == "max_memory_gb":
            out.append(Check(name, limit, None, "n/a", True, fig.note))
            return
        if not fig.known:
            why = fig.note or "not measured"
            out.append(Check(name, limit, None, fig.basis, False, f"unknown ({why})"))
            return
        v = fig.value * scale  # type: ignore[operator]
        ok = v >= limit if higher_ok else v <= limit
        sign = (">=" if ok else "<") if higher_ok else ("<=" if ok else ">")
        text = f"{_mark(fig)}{_num(v)} {unit} {sign} {_num(limit)} {unit}"
        out.append(Check(name, limit, v, fig.basis, ok, text))

    if c.local_only:
        ok = cand.local
        text = "runs here" if ok else f"{cand.backend}: data leaves the machine"
        out.append(Check("local_only", True, cand.local, "fact", ok, text))
    if c.open_weights:
        f = cand.open_weights
        ok = bool(f.value)
        text = ("open" if ok else "closed") if f.known else "unknown licence"
        out.append(Check("open_weights", True, f.value, f.basis, ok, text))
    limit_check("min_context", c.min_context, cand.context, 1, "tokens", True)
    limit_check(
        "max_memory_gb", c.max_memory_gb, cand.memory_bytes, 1 / GB, "GB", False
    )
    limit_check("min_decode_tps", c.min_decode_tps, cand.decode_tps, 1, "tok/s", True)
    limit_check("max_ttft_ms", c.max_ttft_ms, cand.ttft_s, 1e3, "ms", False)
    limit_check("max_tpot_ms", c.max_tpot_ms, cand.tpot_s, 1e3, "ms", False)
    for key, least in c.min_quality.items():
        f = cand.quality.get(key, Figure(None, "unknown", f"no {key} result"))
        limit_check(f"min_quality.{key}", least * 100, f, 100, "%", True)
    limit_check(
        "max_cost_per_mtok", c.max_cost_per_mtok, cand.cost_per_mtok, 1, "USD", False
    )
    return out


# -- score, front, confidence --------------------------------------------------

HIGHER = {"quality": True, "decode_tps": True, "ttft": False, "memory": False}
HIGHER["cost"] = False


def _figures(r: Ranked) -> dict[str, Figure]:
    c = r.candidate
    return {
        "quality": r.quality,
        "decode_tps": c.decode_tps,
        "ttft": c.ttft_s,
        "memory": c.memory_bytes,
        "cost": c.cost_per_mtok,
    }


def _part(value: float | None, best: float | None, higher: bool) -> float:
    if value is None or best is None:
        return 0.0
    if higher:
        return value / best if best > 0 else 0.0
    if value <= 0:
        return 1.0
    return best / value if best > 0 else 0.0


def score_all(
    ranked: list[Ranked],
    profile: Profile,
    values: dict[int, dict[str, float | None]] | None = None,
) -> dict[int, tuple[float, dict[str, float]]]:
    """Scores of the passing candidates (by index), from their figures."""
    weights = {k: w for k, w in profile.weights.as_dict().items() if w > 0}
    values = values or {
        i: {k: f.value for k, f in _figures(r).items()}
        for i, r in enumerate(ranked)
        if r.passed
    }
    best: dict[str, float | None] = {}
    for k in weights:
        known = [v[k] for v in values.values() if v[k] is not None]
        best[k] = (max(known) if HIGHER[k] else min(known)) if known else None
    out = {}
    total = sum(weights.values())
    for i, v in values.items():
        parts = {k: _part(v[k], best[k], HIGHER[k]) for k in weights}
        out[i] = (sum(weights[k] * parts[k] for k in weights) / total, parts)
    return out


def mark_front(ranked: list[Ranked]) -> None:
    """Set ``pareto`` on the quality / speed / memory front."""
    use_quality = any(r.quality.known for r in ranked)
    points = []
    for r in ranked:
        c = r.candidate
        figs = [c.decode_tps, c.memory_bytes] + ([r.quality] if use_quality else [])
        if all(f.known for f in figs) and c.memory_bytes.basis != "n/a":
            # maximise each: speed, -memory, quality
            points.append(
                (
                    r,
                    [c.decode_tps.value, -c.memory_bytes.value]  # type: ignore[operator]
                    + ([r.quality.value] if use_quality else []),
                )
            )
    for r, p in points:
        r.pareto = not any(
            all(a >= b for a, b in zip(q, p, strict=True)) and q != p for _, q in points
        )


def _noisy(r: Ranked, favour: bool) -> dict[str, float | None]:
    """A candidate's figures moved one spread for (True) or against it."""
    out = {}
    for k, f in _figures(r).items():
        if f.value is None or not f.spread:
            out[k] = f.value
            continue
        better = f.spread if HIGHER[k] else -f.spread
        out[k] = f.value + (better if favour else -better)
        if not HIGHER[k]:
            out[k] = max(out[k], 0.0)  # type: ignore[type-var]
    return out


def confidence(ranked: list[Ranked], profile: Profile) -> dict[str, Any]:
    """How sure the top pick is: its basis, its lead, and the noise test."""
    passing = [r for r in ranked if r.passed]
    if not passing:
        return {"level": None, "reason": "nothing passes"}
    top = passing[0]
    estimated = top.candidate.kind == "estimated" or any(
        f.basis == "estimated" for f in _figures(top).values()
    )
    if len(passing) == 1:
        level = "low" if estimated else "high"
        return {
            "level": level,
            "lead": None,
            "holds_under_noise": None,
            "reason": "the only candidate that passes"
            + (", on estimated figures" if estimated else ""),
        }
    second = passing[1]
    lead = (top.score or 0) - (second.score or 0)
    i, j = ranked.index(top), ranked.index(second)
    values = {
        k: {n: f.value for n, f in _figures(r).items()}
        for k, r in enumerate(ranked)
        if r.passed
    }
    values[i], values[j] = _noisy(top, False), _noisy(second, True)
    moved = score_all(ranked, profile, values)
    holds = moved[i][0] > moved[j][0] + TIE
    if estimated:
        level, reason = "low", "the top pick's figures are estimated"
    elif lead <= TIE:
        level, reason = "medium", f"tied with {second.candidate.label}"
    elif holds:
        level, reason = "high", "the lead holds when both move by run-to-run noise"
    else:
        level, reason = "medium", "the lead is within run-to-run noise"
    return {
        "level": level,
        "lead": lead,
        "runner_up": second.candidate.label,
        "holds_under_noise": holds,
        "reason": reason,
    }


# -- when nothing passes ---------------------------------------------------------


def relaxations(ranked: list[Ranked]) -> dict[str, Any]:
    """Which constraint removed most candidates, and how far to relax one."""
    counts: dict[str, int] = {}
    for r in ranked:
        for c in r.checks:
            if not c.passed:
                counts[c.name] = counts.get(c.name, 0) + 1
    if not counts:
        return {}
    worst = max(counts, key=lambda k: counts[k])
    # Candidates that fail exactly one constraint, with a known value: relaxing
    # that constraint to their value admits them.
    options: dict[str, tuple[Any, str]] = {}
    for r in ranked:
        failed = [c for c in r.checks if not c.passed]
        if len(failed) != 1 or failed[0].value is None:
            continue
        c = failed[0]
        if isinstance(c.value, bool):
            continue
        lower_is_limit = c.name.startswith("max_")
        have = options.get(c.name)
        closer = have is None or (
            c.value < have[0] if lower_is_limit else c.value > have[0]
        )
        if closer:
            options[c.name] = (c.value, r.candidate.label)
    return {
        "removed_most": worst,
        "removed": counts[worst],
        "of": len(ranked),
        "counts": counts,
        "relax": {k: {"to": v, "admits": who} for k, (v, who) in options.items()},
    }


# -- the whole recommendation ---------------------------------------------------


def recommend(candidates: list[Candidate], profile: Profile) -> dict[str, Any]:
    """Check, score, rank and explain; plain data for every output format."""
    ranked = [
        Ranked(c, check(c, profile), quality_figure(c, profile)) for c in candidates
    ]
    scores = score_all(ranked, profile)
    for i, (s, parts) in scores.items():
        ranked[i].score, ranked[i].parts = s, parts
    mark_front(ranked)
    ranked.sort(
        key=lambda r: (
            not r.passed,
            -(r.score or 0),
            r.candidate.kind != "measured",
            r.candidate.label,
        )
    )
    rank, previous = 0, None
    for n, r in enumerate(x for x in ranked if x.passed):
        if previous is None or previous - (r.score or 0) > TIE:
            rank = n + 1
        r.rank, previous = rank, r.score
    result = {
        "profile": profile,
        "ranked": ranked,
        "confidence": confidence(ranked, profile),
        "empty": not any(r.passed for r in ranked),
        "relaxations": relaxations(ranked) if not any(r.passed for r in ranked) else {},
    }
    result["explanation"] = explain(result)
    return result


def explain(result: dict[str, Any]) -> str:
    """One paragraph: the pick and why, or why nothing passes."""
    profile: Profile = result["profile"]
    ranked: list[Ranked] = result["ranked"]
    if result["empty"]:
        rel = result["relaxations"]
        if not rel:
            return f"No candidates for {profile.name}: the results database is empty."
        text = (
            f"Nothing meets the {profile.name} profile. {rel['removed_most']} "
            f"removed the most candidates ({rel['removed']} of {rel['of']})."
        )
        relax = rel["relax"]
        if relax:
            bits = [
                f"{k} to {_num(v['to'])} would admit {v['admits']}"
                for k, v in sorted(
                    relax.items(), key=lambda kv: kv[0] != rel["removed_most"]
                )
            ]
            text += " Relaxing " + "; or ".join(bits) + "."
        else:
            text += " Every candidate fails two or more constraints."
        return text
    top = ranked[0]
    c = top.candidate
    ties = [r for r in ranked if r.passed and r.rank == top.rank and r is not top]
    passing = sum(r.passed for r in ranked)
    where = f"{c.device or 'local'}, {c.dtype}" if c.dtype else c.backend
    text = (
        f"{c.label} is the pick for {profile.name}"
        + (f", tied with {', '.join(r.candidate.label for r in ties)}" if ties else "")
        + f": {passing} of {len(ranked)} candidates pass, and it scores "
        f"{top.score:.2f}"
    )
    conf = result["confidence"]
    if conf.get("lead") is not None and not ties:
        text += f", {conf['lead']:.2f} ahead of {conf['runner_up']}"
    text += "."
    checks = [
        f"{short_name(k.name)} {k.text}"
        for k in top.checks
        if k.value is not None and not isinstance(k.value, bool)
    ][:4]
    if checks:
        text += " It meets " + ", ".join(checks) + "."
    basis = "estimated" if c.kind == "estimated" else "measured"
    text += f" Its figures are {basis} ({where})"
    if c.choices:
        text += "; " + "; ".join(c.choices)
    text += "."
    if top.pareto:
        axes = "quality / speed / memory" if top.quality.known else "speed / memory"
        text += f" It is on the {axes} Pareto front."
    text += f" Confidence: {conf['level']} ({conf['reason']})."
    return text


def as_json(result: dict[str, Any]) -> dict[str, Any]:
    """The recommendation as one JSON-ready document."""
    profile: Profile = result["profile"]

    def fig(f: Figure) -> dict[str, Any]:
        return {"value": f.value, "basis": f.basis, "note": f.note, "spread": f.spread}

    rows = []
    for r in result["ranked"]:
        c = r.candidate
        rows.append(
            {
                "rank": r.rank,
                "model": c.model,
                "backend": c.backend,
                "kind": c.kind,
                "device": c.device,
                "dtype": c.dtype,
                "passed": r.passed,
                "first_failure": r.first_failure.name if r.first_failure else None,
                "checks": [vars(k) for k in r.checks],
                "score": r.score,
                "score_parts": r.parts,
                "pareto": r.pareto,
                "figures": {
                    "memory_bytes": fig(c.memory_bytes),
                    "decode_tps": fig(c.decode_tps),
                    "ttft_s": fig(c.ttft_s),
                    "tpot_s": fig(c.tpot_s),
                    "context_tokens": fig(c.context),
                    "cost_usd_per_mtok": fig(c.cost_per_mtok),
                    "quality": fig(r.quality),
                    **{f"quality:{k}": fig(v) for k, v in c.quality.items()},
                },
                "runs": c.runs,
                "choices": c.choices,
            }
        )
    return {
        "profile": profile.model_dump(),
        "explanation": result["explanation"],
        "confidence": result["confidence"],
        "relaxations": result["relaxations"],
        "candidates": rows,
    }
