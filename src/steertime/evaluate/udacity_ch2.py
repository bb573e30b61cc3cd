"""Udacity Challenge 2's own scoring: RMSE on the HMB_3 test frames, public and private.

The evaluation file (`CH2_final_evaluation.csv` in udacity/self-driving-car) has one row
per test frame: `frame_id` (the camera header stamp in ns), `steering_angle` (radians of
steering-wheel angle) and `public` (1: the public board's part, 0: the private part).
Predictions join it by `frame_id`:

- a challenge submission (`frame_id,steering_angle`), exactly;
- a `steertime predict` table (`t`, `steering`): the frame whose stamp is nearest `t`,
  within MATCH_TOL_S (frames are 50 ms apart; a bag's `t` is its stamp to < 1 µs).

Every evaluation frame must have a prediction, as on the board.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.errors import DataError

# The final leaderboard: (team, public RMSE, private RMSE), radians of steering-wheel angle.
BOARD = (("Komanda", 0.0483, 0.0512), ("Rambo", 0.0579, 0.0560), ("Chauffeur", 0.0582, 0.0572))
ZEROS_PUBLISHED = 0.2068  # a submission of zeros, as published with the board
MATCH_TOL_S = 1e-3
PARTS = ("public", "private", "overall")


def read_evaluation(path: str | Path) -> pd.DataFrame:
    """The evaluation file: frame_id (int64), steering_angle (float), public (bool)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"frame_id": "int64"})
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot read the Challenge 2 evaluation file ({e})", path) from None
    missing = [c for c in ("frame_id", "steering_angle", "public") if c not in df.columns]
    if missing:
        raise DataError(f"missing columns {missing} (want frame_id,steering_angle,public)", path)
    angle = pd.to_numeric(df["steering_angle"], errors="coerce")
    if angle.isna().any():
        row = int(np.flatnonzero(angle.isna().to_numpy())[0]) + 2
        raise DataError("steering_angle is not a number", path, row=row, field="steering_angle")
    if df["frame_id"].duplicated().any():
        row = int(np.flatnonzero(df["frame_id"].duplicated().to_numpy())[0]) + 2
        raise DataError("frame_id repeated", path, row=row, field="frame_id")
    return pd.DataFrame(
        {
            "frame_id": df["frame_id"].to_numpy(np.int64),
            "steering_angle": angle.to_numpy(np.float64),
            "public": df["public"].astype(str).str.strip().str.lower().isin(["1", "1.0", "true"]),
        }
    )


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A submission or a `steertime predict` table, as its own columns (see the module)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"frame_id": "int64"} if _has_frame_id(path) else None)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot read predictions ({e})", path) from None


def _has_frame_id(path: Path) -> bool:
    with open(path, errors="replace") as f:
        return "frame_id" in f.readline().split(",")


def match(truth: pd.DataFrame, pred: pd.DataFrame, where: str | Path) -> np.ndarray:
    """The predicted angle (rad) of each evaluation frame, in `truth`'s order."""
    if {"frame_id", "steering_angle"} <= set(pred.columns):
        by_id = pd.Series(
            pd.to_numeric(pred["steering_angle"], errors="coerce").to_numpy(np.float64),
            index=pred["frame_id"].to_numpy(np.int64),
        )
        by_id = by_id[~by_id.index.duplicated()]
        out = by_id.reindex(truth["frame_id"].to_numpy()).to_numpy()
    elif {"t", "steering"} <= set(pred.columns):
        t = pred["t"].to_numpy(np.float64)
        v = pd.to_numeric(pred["steering"], errors="coerce").to_numpy(np.float64)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        want = truth["frame_id"].to_numpy(np.int64) * 1e-9
        out = np.full(len(want), np.nan)
        if len(t):
            j = np.searchsorted(t, want).clip(0, len(t) - 1)
            before = (j - 1).clip(0)
            j = np.where(np.abs(t[before] - want) < np.abs(t[j] - want), before, j)
            out = np.where(np.abs(t[j] - want) <= MATCH_TOL_S, v[j], np.nan)
    else:
        raise DataError(
            "predictions need columns frame_id,steering_angle (a submission) or t,steering "
            f"(steertime predict); found {list(pred.columns)}",
            where,
        )
    miss = ~np.isfinite(out)
    if miss.any():
        ids = truth["frame_id"].to_numpy()[miss]
        shown = ", ".join(str(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")
        raise DataError(
            f"{int(miss.sum())} of {len(out)} evaluation frames have no prediction "
            f"(frame_id {shown}); the board scores every frame",
            where,
        )
    return out


def _rmse(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err**2))) if len(err) else math.nan


def score(truth: pd.DataFrame, predicted: np.ndarray) -> dict:
    """Public, private and overall RMSE of `predicted` and of all zeros on the same frames."""
    y = truth["steering_angle"].to_numpy(np.float64)
    pub = truth["public"].to_numpy(bool)
    masks = {"public": pub, "private": ~pub, "overall": np.ones(len(y), bool)}
    return {
        "frames": {k: int(m.sum()) for k, m in masks.items()},
        "rmse": {k: _rmse(predicted[m] - y[m]) for k, m in masks.items()},
        "zeros": {k: _rmse(y[m]) for k, m in masks.items()},
        "board": [{"team": t, "public": a, "private": b} for t, a, b in BOARD],
        "zeros_published": ZEROS_PUBLISHED,
        "unit": "radians of steering-wheel angle",
    }


def test_images(data: str | Path, truth: pd.DataFrame) -> list | None:
    """The test frames as released (`Ch2_001/center/<frame_id>.jpg`) as drives (cut at
    gaps, like any recording), when `data` is that folder or the one holding `center/`;
    else None."""
    from steertime.data.drive import assemble_drives
    from steertime.data.frames import ImageFiles, keep_present

    data = Path(data)
    ids = np.sort(truth["frame_id"].to_numpy(np.int64))
    folder = next((f for f in (data, data / "center") if (f / f"{ids[0]}.jpg").is_file()), None)
    if folder is None:
        return None
    paths = [folder / f"{i}.jpg" for i in ids]
    problems: list[str] = []
    keep = keep_present(
        [p.is_file() for p in paths], [str(i) for i in ids], folder, False, problems, "frames"
    )
    return assemble_drives(
        name=folder.parent.name if folder.name == "center" else folder.name,
        source=folder,
        format="udacity_ch2_images",
        timestamps=ids[keep] * 1e-9,
        signals={},
        units={},
        frames=ImageFiles([p for p, k in zip(paths, keep, strict=True) if k]),
        rows=ids[keep],
        problems=problems,
    )


def predict_frames(
    run: str | Path,
    data: str | Path,
    format: str | None,
    options,
    threads: int,
    truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A run streamed over the test frames: the released `center/<frame_id>.jpg` images,
    or a recording (a bag needs no steering here: the evaluation file holds the truth);
    a table with t and steering in radians of steering-wheel angle."""
    from steertime.data.resolve import RECORDING, VIDEO, read_source, resolve
    from steertime.stream import Predictor
    from steertime.stream.run import predict_drives

    images = test_images(data, truth) if truth is not None and format is None else None
    if images is not None:
        drives = images
    else:
        src = resolve(data, format, options, accept=(RECORDING, VIDEO))
        if src.format == "udacity_bag":
            src = resolve(data, "udacity_bag_frames", options, accept=(RECORDING,))
        drives = [d for d in read_source(src, options).drives if d.frames is not None]
    if not drives:
        raise DataError("no drive with frames to predict on", data)
    p = Predictor.from_run(run, threads=threads)
    if "steering" not in p.layout.names:
        raise DataError("the run does not predict steering", run)
    unit = p.layout.units[p.layout.index("steering")] if p.layout.units else {}
    factor = unit.get("to_radians")
    if factor is None or unit.get("angle_of") not in (None, "steering_wheel"):
        raise DataError(
            f"the run's steering is in {unit.get('name', 'an unknown unit')} "
            f"({unit.get('angle_of') or 'angle unknown'}): the board scores radians of "
            "steering-wheel angle",
            run,
        )
    df = predict_drives(p, drives)
    df["steering"] = df["steering"] * factor
    return df


def evaluate_ch2(
    evaluation: str | Path,
    run_or_predictions: str | Path,
    data: str | Path | None = None,
    format: str | None = None,
    options=None,
    threads: int = 1,
) -> dict:
    """Score a run streamed over `data` (the HMB_3 bag), or a predictions file, against the
    Challenge 2 evaluation file."""
    truth = read_evaluation(evaluation)
    source = Path(run_or_predictions)
    if source.is_file():
        pred = read_predictions(source)
    elif data is None:
        raise DataError("a run needs --data: the recording of the test frames", source)
    else:
        pred = predict_frames(source, data, format, options, threads, truth)
    result = score(truth, match(truth, pred, source))
    result["name"] = source.stem if source.is_file() else source.name
    return result
