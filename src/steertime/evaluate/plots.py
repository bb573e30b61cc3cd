"""Pictures of an evaluation (matplotlib, PNG), each written atomically."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from steertime.atomic import atomic_file  # noqa: E402
from steertime.evaluate.metrics import interval_coverage  # noqa: E402
from steertime.models.layout import Z90  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(name: str, unit: dict) -> str:
    return f"{name} [{unit.get('name', '')}]" if unit else name


def segment_title(dname: str, t: np.ndarray) -> str:
    """'sim_seed0#1[1040:1200]' -> 'drive sim_seed0#1, frames 1040–1200 (16.0 s)'."""
    m = re.fullmatch(r"(.*)\[(\d+):(\d+)\]", dname)
    span = f"{float(t[-1] - t[0]):.1f} s" if len(t) > 1 else ""
    if m is None:
        return f"drive {dname}" + (f" ({span})" if span else "")
    drive, a, b = m.groups()
    return f"drive {drive}, frames {a}–{b}" + (f" ({span})" if span else "")


def timeseries(frames, name: str, out: Path) -> Path:
    """Truth and every model over time, one panel per evaluated segment (up to 4)."""
    drives = list(dict.fromkeys(frames.drive))[:4]
    fig, axes = plt.subplots(
        len(drives),
        1,
        figsize=(11, 2.8 * len(drives)),
        squeeze=False,
        layout="constrained",  # titles no longer overlap the panel above
    )
    for ax, dname in zip(axes[:, 0], drives, strict=True):
        m = frames.drive == dname
        t = frames.t[m] - frames.t[m][0]
        ax.plot(t, frames.truth[name][m], color="black", lw=1.4, label="driver (truth)")
        for model, preds in frames.preds.items():
            (line,) = ax.plot(t, preds[name][m], lw=1.0, label=model)
            if (sd := frames.spreads.get(model, {}).get(name)) is not None:
                p, half = preds[name][m], Z90 * sd[m]
                ax.fill_between(t, p - half, p + half, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(segment_title(dname, frames.t[m]), fontsize=9, loc="left")
        ax.set_ylabel(_label(name, frames.units.get(name, {})))
    axes[-1, 0].set_xlabel("time [s]")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{name}: driver and models over time (held-out segments)", fontsize=11)
    return _save(fig, out)


def calibration(frames, name: str, out: Path) -> Path | None:
    """Reliability of the predicted spreads (runs trained with `train.spread`): for each
    nominal central interval, the share of frames whose target it covered. On the diagonal
    the spread is honest; below it the model is overconfident. A marker shows each run's
    90% interval recalibrated online (`frames.online_spreads`). None without a spread."""
    models = [m for m in frames.preds if name in frames.spreads.get(m, {})]
    if not models:
        return None
    levels = np.linspace(0.05, 0.99, 48)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], color="black", lw=1, label="honest")
    ax.fill_between([0.85, 0.95], 0, 1, color="0.85", lw=0, label="85–95%")
    for m in models:
        pred, sd = frames.preds[m][name], frames.spreads[m][name]
        target = frames.calibration_target(m, name)
        cover = [interval_coverage(pred, target, sd, p) for p in levels]
        lead = frames.leads.get(m, 0)
        at90 = interval_coverage(pred, target, sd, 0.9)
        label = f"{m}: 90% covers {at90:.1%}" + (f" (vs log +{lead} frames)" if lead else "")
        (line,) = ax.plot(levels, cover, lw=1.5, label=label)
        if (sd_online := frames.online_spreads.get(m, {}).get(name)) is not None:
            online = interval_coverage(pred, target, sd_online, 0.9)
            ax.plot(
                [0.9],
                [online],
                "o",
                color=line.get_color(),
                ms=6,
                label=f"{m}: 90% recalibrated online covers {online:.1%}",
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal interval (mean ± z·spread)")
    ax.set_ylabel("frames covered")
    ax.set_title(f"{name}: calibration of the predicted spread", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, out)


def error_histogram(frames, name: str, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, preds in frames.preds.items():
        ax.hist(preds[name] - frames.truth[name], bins=60, alpha=0.5, label=model)
    ax.set_xlabel(f"prediction − truth ({frames.units.get(name, {}).get('name', '')})")
    ax.set_ylabel("frames")
    ax.set_title(f"{name}: distribution of the error")
    ax.legend(fontsize=8)
    return _save(fig, out)


def scatter(frames, name: str, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    true = frames.truth[name]
    for model, preds in frames.preds.items():
        ax.scatter(true, preds[name], s=4, alpha=0.4, label=model)
    lo, hi = float(np.min(true)), float(np.max(true))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1)
    ax.set_xlabel(f"true {_label(name, frames.units.get(name, {}))}")
    ax.set_ylabel("predicted")
    ax.set_title(f"{name}: predicted vs true (on the line: exact)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out)


def training_curves(run: Path, out: Path) -> Path | None:
    f = Path(run) / "metrics.csv"
    if not f.is_file():
        return None
    rows = list(csv.DictReader(f.read_text().splitlines()))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    ax[0].plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    ax[0].set_title("train loss (normalised MSE)")
    for k in rows[0]:
        if k.startswith("val_rmse") and not k.endswith("_rad"):
            ax[1].plot(epochs, [float(r[k]) for r in rows], marker="o", label=k[4:])
    ax[1].set_title("validation RMSE (native units)")
    ax[1].legend(fontsize=8)
    for a in ax:
        a.set_xlabel("epoch")
    return _save(fig, out)


def leaderboard(rows: list[dict], name: str, out: Path) -> Path:
    """Bar chart of RMSE with 95% block-bootstrap intervals, one bar per model."""
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    y = np.arange(len(rows))
    r = np.array([row["rmse"] for row in rows])
    # no interval (too few frames): a bar without whiskers
    lo = np.nan_to_num(r - np.array([row["rmse_ci95"][0] for row in rows]))
    hi = np.nan_to_num(np.array([row["rmse_ci95"][1] for row in rows]) - r)
    ax.barh(y, r, xerr=[lo, hi], color="#4c72b0", capsize=3)
    ax.set_yticks(y, [row["model"] for row in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{name} RMSE (95% CI)")
    return _save(fig, out)
