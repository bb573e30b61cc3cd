"""Honest evaluation: streaming metrics vs baselines, plots, an HTML report, overlays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from steertime.atomic import atomic_file, write_json
from steertime.data import ReadOptions
from steertime.evaluate import plots
from steertime.evaluate.report import write_report
from steertime.evaluate.run import Frames, evaluate, score
from steertime.stream.adaptive import DEFAULT_GAMMA
from steertime.stream.threads import DEFAULT_THREADS

__all__ = ["Frames", "evaluate", "evaluate_to_dir", "leaderboard", "score"]


def evaluate_to_dir(
    run: str | Path,
    data: str | Path,
    out: str | Path,
    split: str | None = "test",
    compare: list[str | Path] = (),
    format: str | None = None,
    options: ReadOptions | None = None,
    sections: Sequence[str] = (),
    threads: int = DEFAULT_THREADS,
    faults: str | None = None,
    fault_seed: int = 0,
    adapt_gamma: float = DEFAULT_GAMMA,
) -> dict:
    """Evaluate and write metrics.json, predictions.parquet, PNG plots and report.html
    (with extra HTML `sections`, each opening with its `<h2>`, before the configuration)."""
    out = Path(out)
    # Score first: a refused run (NaN weights, unreadable data) must leave no empty --out.
    result, frames, layout = evaluate(
        run, data, split, compare, format, options, threads, faults, fault_seed, adapt_gamma
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", _json_safe(result))
    table = {"drive": frames.drive, "t": frames.t}
    if frames.fault is not None:
        table["camera_fault"] = frames.fault
    for name, v in frames.truth.items():
        table[f"true_{name}"] = v
    for model, preds in frames.preds.items():
        for name, v in preds.items():
            table[f"{model}:{name}"] = v
        for name, v in frames.spreads.get(model, {}).items():
            table[f"{model}:{name}_std"] = v  # runs trained with train.spread
        for name, v in frames.online_spreads.get(model, {}).items():
            table[f"{model}:{name}_std_adaptive"] = v  # recalibrated online (stream.adaptive)
    with atomic_file(out / "predictions.parquet") as f:
        pd.DataFrame(table).to_parquet(f, index=False)
    images: dict[str, list[Path]] = {}
    for name in result["outputs"]:
        images[name] = [
            plots.timeseries(frames, name, out / f"timeseries_{name}.png"),
            plots.error_histogram(frames, name, out / f"error_hist_{name}.png"),
            plots.scatter(frames, name, out / f"scatter_{name}.png"),
        ]
        if cal := plots.calibration(frames, name, out / f"calibration_{name}.png"):
            images[name].append(cal)
    curves = plots.training_curves(Path(run), out / "training_curves.png")
    images["training"] = [curves] if curves else []
    cfg = Path(run) / "config.yaml"
    config_text = cfg.read_text() if cfg.is_file() else ""
    write_report(out / "report.html", result, images, config_text, sections)
    return result


def _json_safe(obj):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def leaderboard(result: dict, name: str = "steering") -> list[dict]:
    """One row per model (runs and reference predictors), best RMSE first."""
    entry = result["outputs"][name]
    rows = [
        {"model": m, **{k: v for k, v in s.items() if k != "by_magnitude"}}
        for m, s in entry["models"].items()
    ]
    return sorted(rows, key=lambda r: r["rmse"])
