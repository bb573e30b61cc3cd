"""The verdict: which model is best on each output, by how much, and whether it is any good.

Read from a `score()` result, so the terminal and the report say the same thing. The
paired interval is `diff_ci95_vs_primary` (block bootstrap of RMSE(other) − RMSE(primary)
with the blocks resampled jointly): if it excludes 0 the difference is real on this data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steertime.evaluate.metrics import BLOCK_S, MIN_BLOCKS

REFERENCES = ("predict_zero", "predict_mean")
POOR_R2 = 0.5  # below this a model explains less than half the variance: say so


@dataclass
class Verdict:
    output: str
    text: str
    ok: bool  # False: the best run does not beat predict-the-mean, or its R² is poor


def _diff(entry: dict, a: str, b: str, primary: str) -> tuple[float, float] | None:
    """95% interval of RMSE(a) − RMSE(b), from the intervals against the primary run."""
    d = entry.get("diff_ci95_vs_primary", {})
    if b == primary and a in d:
        return tuple(d[a])
    if a == primary and b in d:
        lo, hi = d[b]
        return (-hi, -lo)
    return None


def _short(ci: tuple[float, float] | None) -> bool:
    """An interval that could not be drawn: too few frames (`metrics.MIN_BLOCKS`)."""
    return ci is not None and not all(math.isfinite(c) for c in ci)


def _beats(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return ""
    if _short(ci):
        return (
            f"no paired interval: under {MIN_BLOCKS} blocks of {BLOCK_S:g} s of frames, too "
            "few to tell whether the difference is real (evaluate on more frames)"
        )
    lo, hi = ci
    if hi < 0:
        return f"paired 95% CI of the difference [{lo:+.3g}, {hi:+.3g}]: a real difference"
    return f"paired 95% CI of the difference [{lo:+.3g}, {hi:+.3g}] contains 0: within the noise"


def verdicts(result: dict) -> list[Verdict]:
    """One verdict per output scored."""
    primary = result["primary"]
    out = []
    for name, entry in result["outputs"].items():
        models = entry["models"]
        unit = entry.get("unit", {}).get("name", "")
        runs = sorted((m for m in models if m not in REFERENCES), key=lambda m: models[m]["rmse"])
        if not runs:
            continue
        best = runs[0]
        b = models[best]
        # the one to beat: the runner-up run, else predict-the-mean
        rival = runs[1] if len(runs) > 1 else "predict_mean"
        r = models[rival]
        pct = 100 * (b["rmse"] / r["rmse"] - 1) if r["rmse"] > 0 else float("nan")
        parts = [
            f"{name}: {best} is best, RMSE {b['rmse']:.4g} {unit}".rstrip()
            + f" vs {rival} {r['rmse']:.4g} ({pct:+.1f}%)"
        ]
        ci = _diff(entry, best, rival, primary)
        if s := _beats(ci):
            parts.append(s)
        ok = True
        mean = models.get("predict_mean")
        if mean is not None:
            ci_mean = _diff(entry, best, "predict_mean", primary)
            if _short(ci_mean):  # no interval to test against: the point estimates decide
                ci_mean = None
            beats_mean = b["rmse"] < mean["rmse"] and (ci_mean is None or ci_mean[1] < 0)
            if b["rmse"] >= mean["rmse"]:
                ok = False
                parts.append(
                    f"it does NOT beat predict-the-mean ({mean['rmse']:.4g}): the model has "
                    "not learned this output (steertime diagnose RUN --data CACHE)"
                )
            elif not beats_mean:
                ok = False
                lo, hi = ci_mean
                parts.append(
                    f"it does NOT beat predict-the-mean ({mean['rmse']:.4g}) beyond the noise "
                    f"(paired 95% CI [{lo:+.3g}, {hi:+.3g}] contains 0): more test data, or "
                    "a model that learned more"
                )
        zero = models.get("predict_zero")
        if zero is not None and zero["rmse"] <= b["rmse"]:
            # Steering straight ahead beats every run: on a straight test stretch, or a
            # model biased by its training drives; either way it is not steering yet.
            ok = False
            parts.append(
                f"it does NOT beat predict-zero ({zero['rmse']:.4g}): on these frames "
                "always answering 0 is better than the model"
            )
        for m in runs:
            if "coverage90" in models[m]:
                cov = models[m]["coverage90"]
                led = models[m].get("coverage90_vs_trained_target")
                parts.append(
                    f"{m}'s 90% interval covers {cov:.1%} of frames (mean spread "
                    f"{models[m]['mean_spread']:.3g} {unit})".replace(" )", ")")
                    + (
                        f", {led:.1%} of the target it was trained on (the log "
                        f"{models[m]['lead_frames']} frames later)"
                        if led is not None
                        else ""
                    )
                    + _adaptive_text(models[m], unit)
                )
        if math.isfinite(b.get("r2", math.nan)) and b["r2"] < POOR_R2:
            ok = False
            parts.append(
                f"R² {b['r2']:.2f} is poor: it explains {max(b['r2'], 0):.0%} of the variance"
            )
        out.append(Verdict(name, "; ".join(parts), ok))
    return out


def _adaptive_text(m: dict, unit: str) -> str:
    """The same interval recalibrated online from the outcomes seen (stream.adaptive)."""
    if "coverage90_adaptive" not in m:
        return ""
    return (
        f"; recalibrated online from the outcomes seen (gamma {m['adapt_gamma']:g}) "
        f"{m['coverage90_adaptive']:.1%} (mean spread {m['mean_spread_adaptive']:.3g} {unit})"
    ).replace(" )", ")")
