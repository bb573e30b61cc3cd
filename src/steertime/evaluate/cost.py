"""What each run cost to train, read from its folder and shown beside its error.

A model that steers as well as another after a third of the training is the better tool on
a laptop, and an ensemble of four costs four trainings: `evaluate` and `compare` put the
seconds beside the RMSE (`metrics.json` `training`, the report's Training table, a line
per run on the terminal). From `metrics.csv`'s `elapsed_s` (runs since the twenty-sixth
session): set-up, steps, validation and checkpoints. Older runs, and folders without a
`metrics.csv`, report what they have and no seconds — never a guess.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from steertime.models.checkpoint import read_meta


def _best_meta(run: Path) -> dict | None:
    folder = run / "checkpoints" / "best"
    return read_meta(folder) if (folder / "meta.json").is_file() else None


def _json(f: Path) -> dict:
    try:
        d = json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a damaged soup.json: the epoch's figures stand without the soup's
    return d if isinstance(d, dict) else {}


def training_cost(run: str | Path) -> dict | None:
    """{"epochs", "kept", "kept_at_s", "trained_s"} of a trained run (and "kept_epoch", the
    0-based epoch, when one epoch rather than the soup was kept); for an ensemble the
    members' sums (`members`); None when the folder says nothing about its training."""
    run = Path(run)
    meta = _best_meta(run)
    if meta is None:
        return None
    if "members" in meta:
        costs = [training_cost(m["run"]) for m in meta["members"]]
        known = [c for c in costs if c and c.get("trained_s") is not None]
        out: dict = {"members": len(costs), "kept": f"ensemble of {len(costs)}"}
        if len(known) == len(costs):  # a sum with a member missing would undercount
            out["trained_s"] = sum(c["trained_s"] for c in known)
            out["kept_at_s"] = sum(c["kept_at_s"] for c in known)
        return out
    f = run / "metrics.csv"
    if not f.is_file():
        return None
    try:
        m = pd.read_csv(f)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None  # a damaged log says nothing reliable; the scores stand without it
    if "epoch" not in m:
        return None
    # rows a crash left half-written (NUL bytes, cut lines) are dropped, not guessed at
    for col in ("epoch", "elapsed_s"):
        if col in m:
            m[col] = pd.to_numeric(m[col], errors="coerce")
    m = m.dropna(subset=["epoch"]).reset_index(drop=True)
    if m.empty:
        return None
    soup = _json(run / "soup.json")
    epoch = meta.get("epoch")
    out = {"epochs": int(len(m)), "kept": "soup" if "soup_epochs" in meta else None}
    if out["kept"] is None:
        out["kept"] = f"epoch {int(epoch) + 1}" if epoch is not None else "last"
        out["kept_epoch"] = int(epoch) if epoch is not None else int(m["epoch"].iloc[-1])
    if "elapsed_s" not in m:
        return out
    if "soup_epochs" in meta and "elapsed_s" in soup:
        kept_at = float(soup["elapsed_s"])
    else:
        row = m.loc[m["epoch"] == epoch, "elapsed_s"] if epoch is not None else m["elapsed_s"]
        kept_at = float(row.iloc[-1]) if len(row) else None
    out["kept_at_s"] = kept_at
    out["trained_s"] = max(float(m["elapsed_s"].max()), float(soup.get("elapsed_s", 0.0)))
    return out


def describe(name: str, cost: dict) -> str:
    """One line for the terminal: what was kept, when, and what the whole run took."""
    if cost.get("trained_s") is None:
        return f"{name}: kept {cost['kept']}" + (
            f" of {cost['epochs']} epochs" if "epochs" in cost else ""
        )
    if "members" in cost:  # sums: members trained side by side (--jobs) took less wall time
        return (
            f"{name}: kept {cost['kept']}; its members trained {cost['trained_s']:.0f} s "
            f"summed ({cost['kept_at_s']:.0f} s to their kept models)"
        )
    at = f" (on disk after {cost['kept_at_s']:.0f} s)" if cost.get("kept_at_s") else ""
    span = f"{cost['epochs']} epochs, " if "epochs" in cost else ""
    return f"{name}: kept {cost['kept']}{at}; trained {span}{cost['trained_s']:.0f} s"
