"""Mirror test-time augmentation: does a model trained on mirrored sequences steer better
when it also sees each held-out frame mirrored?

A run trained with `data.flip=true` has learnt the mirrored world too, so a second pass
over the mirrored frames (its own state, the antisymmetric outputs negated back) is a
second, free-to-train member of an average — and it makes the prediction exactly
antisymmetric, which a track driven both ways round might reward:

    y_tta(x) = (y(x) + S y(mirror(x))) / 2      S = -1 for steering, torque, ..., else +1

Each fold is a cache and a run scored on one of its splits; a run trained with `--seeds K`
is scored member by member and as their average:

    python benchmarks/mirror_tta.py --fold CACHE_0=RUN_0 --fold CACHE_1=RUN_1 ... \
        --splits val,test [--out result.json]

The table pools every fold's frames and gives, for each split, the plain prediction and
the mirrored average, the ratio with a paired block-bootstrap interval (2 s blocks, never
across drives or folds). Choose on `val` (the frames that picked the checkpoint), quote
`test` once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from steertime.atomic import write_json
from steertime.data.cache import Cache
from steertime.errors import SteertimeError
from steertime.evaluate import metrics as M
from steertime.models.base import SequenceModel
from steertime.models.checkpoint import load_model
from steertime.models.layout import OutputLayout
from steertime.train.batches import ANTISYMMETRIC

CHUNK = 256


def predict(
    model: SequenceModel, layout: OutputLayout, frames: np.ndarray, mirror: bool
) -> np.ndarray:
    """(T, K) physical predictions streaming over (T, H, W, 3) frames from a fresh state;
    with `mirror`, over the frames mirrored left-right, the antisymmetric outputs negated."""
    state, out = model.init_state(1), []
    for a in range(0, len(frames), CHUNK):
        x = frames[a : a + CHUNK]
        if mirror:
            x = x[:, :, ::-1]
        with torch.no_grad():
            y, state = model(torch.from_numpy(np.ascontiguousarray(x))[None], state)
        out.append(y[0].float().numpy())
    p = layout.denormalize(np.concatenate(out))
    if mirror:
        sign = np.array([-1.0 if n in ANTISYMMETRIC else 1.0 for n in layout.names])
        p = p * sign
    return p


def members(run: Path) -> list[Path]:
    """The runs to score: a `--seeds K` run's members, or the run itself."""
    folder = run / "members"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else [run]


def score_fold(cache_path: Path, run: Path, split: str, output: str = "steering") -> dict:
    """Per-frame truth and the plain and mirrored predictions of every member."""
    cache = Cache.open(cache_path)
    segs = cache.segments(split)
    if not segs:
        raise SteertimeError(f"{cache_path}: split {split!r} is empty")
    loaded = []  # (model, layout, index of `output`), loaded once for every segment
    for r in members(run):
        model, meta = load_model(r)
        if output not in meta.layout.names:
            raise SteertimeError(f"{r}: predicts {meta.layout.names}, not {output!r}")
        loaded.append((model, meta.layout, meta.layout.names.index(output)))
    truth, plain, mirrored, drive = [], [], [], []
    for s in segs:
        d = cache.drives[s.drive]
        frames = d.read_frames(s.start, s.stop)
        truth.append(d.signals[output][s.start : s.stop])
        drive += [f"{d.name}[{s.start}:{s.stop}]"] * len(s)
        p, q = [], []
        for model, layout, k in loaded:
            p.append(predict(model, layout, frames, mirror=False)[:, k])
            q.append(predict(model, layout, frames, mirror=True)[:, k])
        plain.append(np.stack(p, 1))
        mirrored.append(np.stack(q, 1))
    return {
        "truth": np.concatenate(truth),
        "plain": np.concatenate(plain),  # (N, members)
        "mirrored": np.concatenate(mirrored),
        "drive": np.asarray(drive),
        "rate_hz": float(np.median([e["rate_hz"] for e in cache.manifest["drives"]])),
    }


def compare(folds: list[dict], clip: float = 1.0) -> dict:
    """Pooled RMSE of the members' average with and without the mirrored pass, their
    ratio with a paired interval, and each member alone with and without it."""
    y = np.concatenate([f["truth"] for f in folds])
    plain = np.clip(np.concatenate([f["plain"] for f in folds]), -clip, clip)
    mirrored = np.clip(np.concatenate([f["mirrored"] for f in folds]), -clip, clip)
    groups = np.concatenate([[f"{i}:{d}" for d in f["drive"]] for i, f in enumerate(folds)])
    e_plain = plain.mean(1) - y
    e_tta = (plain.mean(1) + mirrored.mean(1)) / 2 - y
    rmse = lambda e: float(np.sqrt(np.mean(e**2)))  # noqa: E731
    block = max(2, int(round(M.BLOCK_S * np.median([f["rate_hz"] for f in folds]))))
    return {
        "frames": len(y),
        "plain": rmse(e_plain),
        "mirror_tta": rmse(e_tta),
        "ratio": rmse(e_tta) / rmse(e_plain),
        "ratio_ci95": M.block_bootstrap_ratio(e_tta, e_plain, block, groups=groups),
        "members_plain": [rmse(plain[:, j] - y) for j in range(plain.shape[1])],
        "members_tta": [
            rmse((plain[:, j] + mirrored[:, j]) / 2 - y) for j in range(plain.shape[1])
        ],
        "members_mirrored_only": [rmse(mirrored[:, j] - y) for j in range(plain.shape[1])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fold", action="append", required=True, metavar="CACHE=RUN")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--output", default="steering")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the results here as JSON")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pairs = [f.split("=", 1) for f in a.fold]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("--fold takes CACHE=RUN")
    res = {}
    for split in a.splits.split(","):
        folds = [score_fold(Path(c), Path(r), split, a.output) for c, r in pairs]
        res[split] = r = compare(folds)
        lo, hi = r["ratio_ci95"]
        print(
            f"{split}: {r['frames']} frames, members averaged {r['plain']:.4f}, with the "
            f"mirrored pass {r['mirror_tta']:.4f}, {r['ratio']:.3f}x [{lo:.3f}, {hi:.3f}]; "
            f"members alone {np.round(r['members_plain'], 4).tolist()} -> "
            f"{np.round(r['members_tta'], 4).tolist()} (mirrored only "
            f"{np.round(r['members_mirrored_only'], 4).tolist()})",
            flush=True,
        )
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
