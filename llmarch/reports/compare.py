"""Two runs side by side: each figure's change, and whether it beats the noise.

The rule (README, "Comparing two runs"): for a figure with means ``m_A``,
``m_B``, sample standard deviations ``s_A``, ``s_B`` over ``n_A``, ``n_B``
measured repeats, the change ``m_B - m_A`` is larger than the run-to-run
noise when ``|m_B - m_A| > 2 * sqrt(s_A^2 / n_A + s_B^2 / n_B)``, about a 95 %
Welch interval for many repeats. With fewer than 2 samples on either side
the noise is unknown. Quality figures use their standard errors the same way:
``|v_B - v_A| > 2 * sqrt(se_A^2 + se_B^2)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from llmarch.errors import ConfigError
from llmarch.quality.evaluate import summaries
from llmarch.report import SETTING_KEYS
from llmarch.stats import summarize

NOISE_FACTOR = 2.0
LARGER = "larger than noise"
WITHIN = "within noise"
NO_NOISE = "noise unknown"

# figure: (label, scale shown, unit shown, higher is better, digits shown)
SPEED_FIGURES = {
    "ttft_s": ("TTFT mean", 1e3, "ms", False, 2),
    "tpot_s": ("TPOT mean", 1e3, "ms", False, 3),
    "e2e_s": ("end-to-end mean", 1.0, "s", False, 3),
    "prefill_tps": ("prefill mean", 1.0, "tokens/s", True, 1),
    "decode_tps": ("decode mean", 1.0, "tokens/s", True, 2),
    "peak_memory_bytes": ("peak memory mean", 1 / 2**20, "MiB", False, 1),
}
LOWER_IS_BETTER = {
    "perplexity",
    "bits_per_byte",
    "byte_perplexity",
    "word_perplexity",
    "token_perplexity",
}


@dataclass(frozen=True)
class Change:
    """One figure in both runs and what the noise rule says about the change."""

    figure: str
    a: float | None
    b: float | None
    n_a: int
    n_b: int
    delta: float | None  # b - a
    pct: float | None  # (b - a) / a * 100
    threshold: float | None  # 2 * combined standard error
    verdict: str
    better: bool | None  # the change is larger than noise and in the good direction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _change(
    figure: str,
    a: float | None,
    b: float | None,
    n_a: int,
    n_b: int,
    se: float | None,
    higher_is_better: bool,
    why_no_noise: str,
) -> Change:
    delta = None if a is None or b is None else b - a
    pct = None if delta is None or not a else delta / a * 100
    threshold = None if se is None else NOISE_FACTOR * se
    if delta is None:
        verdict, better = "missing in one run", None
    elif threshold is None:
        verdict, better = f"{NO_NOISE} ({why_no_noise})", None
    elif abs(delta) > threshold:
        verdict, better = LARGER, (delta > 0) == higher_is_better
    else:
        verdict, better = WITHIN, None
    return Change(figure, a, b, n_a, n_b, delta, pct, threshold, verdict, better)


def noise_test(
    a: list[float], b: list[float], *, higher_is_better: bool = True, figure: str = ""
) -> Change:
    """Compare the means of two samples with the 2 x Welch standard error rule."""
    sa, sb = summarize(a), summarize(b)
    n_a, n_b = (sa.n if sa else 0), (sb.n if sb else 0)
    se = None
    if sa and sb and sa.std is not None and sb.std is not None:
        se = math.sqrt(sa.std**2 / sa.n + sb.std**2 / sb.n)
    return _change(
        figure,
        sa.mean if sa else None,
        sb.mean if sb else None,
        n_a,
        n_b,
        se,
        higher_is_better,
        f"n = {n_a}/{n_b}",
    )


def quality_test(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    higher_is_better: bool = True,
    figure: str = "",
    n_a: int = 0,
    n_b: int = 0,
) -> Change:
    """Compare two quality figures ``{value, stderr}`` by their standard errors."""
    se = None
    if a.get("stderr") is not None and b.get("stderr") is not None:
        se = math.sqrt(a["stderr"] ** 2 + b["stderr"] ** 2)
    return _change(
        figure,
        a.get("value"),
        b.get("value"),
        n_a,
        n_b,
        se,
        higher_is_better,
        "no standard error",
    )


def _groups(samples: list[dict[str, Any]]) -> dict[tuple[int, ...], list[dict]]:
    """Measured, successful samples by setting (``llmarch.report``'s keys)."""
    out: dict[tuple[int, ...], list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        if not s.get("is_warmup") and not s.get("error"):
            out[tuple(s.get(k) or 1 for k in SETTING_KEYS)].append(s)
    return out


def compare_runs(store: Any, run_a: dict[str, Any], run_b: dict[str, Any]) -> dict:
    """Every setting and quality metric both runs have, with its ``Change``."""
    ga = _groups(store.samples(run_a["run_id"]))
    gb = _groups(store.samples(run_b["run_id"]))
    settings = []
    for key in sorted(set(ga) & set(gb)):
        changes = []
        for figure, (*_, higher, _digits) in SPEED_FIGURES.items():
            va = [s[figure] for s in ga[key] if s.get(figure) is not None]
            vb = [s[figure] for s in gb[key] if s.get(figure) is not None]
            if va or vb:
                changes.append(
                    noise_test(va, vb, higher_is_better=higher, figure=figure)
                )
        settings.append(
            {"setting": dict(zip(SETTING_KEYS, key, strict=True)), "changes": changes}
        )

    qa = {q["task"]: q for q in summaries(store, run_a["run_id"])}
    qb = {q["task"]: q for q in summaries(store, run_b["run_id"])}
    quality = []
    for task in [t for t in qa if t in qb]:
        for metric in [m for m in qa[task]["metrics"] if m in qb[task]["metrics"]]:
            change = quality_test(
                qa[task]["metrics"][metric],
                qb[task]["metrics"][metric],
                higher_is_better=metric not in LOWER_IS_BETTER,
                figure=metric,
                n_a=qa[task]["items"],
                n_b=qb[task]["items"],
            )
            quality.append({"task": task, "metric": metric, "change": change})

    if not settings and not quality:
        raise ConfigError(
            f"runs {run_a['run_id']} and {run_b['run_id']} share no setting "
            "(prompt tokens, new tokens, batch, concurrency) and no quality task; "
            "compare runs that measured the same thing"
        )

    def only(mine: dict, theirs: dict) -> list[dict[str, int]]:
        return [
            dict(zip(SETTING_KEYS, k, strict=True))
            for k in sorted(set(mine) - set(theirs))
        ]

    return {
        "a": run_a,
        "b": run_b,
        "settings": settings,
        "quality": quality,
        "only_a": only(ga, gb),
        "only_b": only(gb, ga),
        "quality_only_a": [t for t in qa if t not in qb],
        "quality_only_b": [t for t in qb if t not in qa],
    }


# -- rendering ----------------------------------------------------------------

COMPARE_HEADERS = [
    "setting / task",
    "figure (unit)",
    "n (A / B)",
    "A",
    "B",
    "change B − A",
    "change %",
    "noise ± (2·SE)",
    "verdict",
]


def setting_text(setting: dict[str, int]) -> str:
    text = f"P={setting['prompt_tokens']} N={setting['new_tokens']} "
    text += f"B={setting['batch']}"
    if (setting.get("concurrency") or 1) != 1:
        text += f" C={setting['concurrency']}"
    return text


def _num(value: float | None, scale: float, digits: int, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * scale:{'+' if sign else ''},.{digits}f}"


def _verdict(c: Change) -> str:
    if c.better is None:
        return c.verdict
    return f"{c.verdict} ({'better' if c.better else 'worse'})"


def _row(where: str, label: str, c: Change, scale: float, digits: int) -> list[str]:
    return [
        where,
        label,
        f"{c.n_a} / {c.n_b}",
        _num(c.a, scale, digits),
        _num(c.b, scale, digits),
        _num(c.delta, scale, digits, sign=True),
        "–" if c.pct is None else f"{c.pct:+.1f} %",
        _num(c.threshold, scale, digits),
        _verdict(c),
    ]


def compare_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows: every speed figure, then every quality one."""
    from llmarch.report import METRIC_LABELS

    rows = []
    for group in result["settings"]:
        where = setting_text(group["setting"])
        for c in group["changes"]:
            label, scale, unit, _higher, digits = SPEED_FIGURES[c.figure]
            rows.append(_row(where, f"{label} ({unit})", c, scale, digits))
    for q in result["quality"]:
        label, scale, digits = METRIC_LABELS.get(q["metric"], (q["metric"], 1.0, 4))
        if scale == 100.0:
            digits = 2
        c = q["change"]
        if label.endswith(" %"):
            label = f"{label[:-2]} (%)"
        rows.append(_row(q["task"], label, c, scale, digits))
    return COMPARE_HEADERS, rows


def compare_json(result: dict[str, Any]) -> dict[str, Any]:
    """The comparison as plain data (``Change`` objects as dicts)."""
    return {
        **result,
        "settings": [
            {"setting": g["setting"], "changes": [c.as_dict() for c in g["changes"]]}
            for g in result["settings"]
        ],
        "quality": [
            {"task": q["task"], "metric": q["metric"], **q["change"].as_dict()}
            for q in result["quality"]
        ],
        "rule": f"|B - A| > {NOISE_FACTOR:g} * sqrt(s_A^2/n_A + s_B^2/n_B)",
    }
