"""Held-out sessions, as RC builders use a model: steertime against PilotNet and Donkeycar.

    python benchmarks/bench_sessions.py --work /tmp/sess [--protocols sessions,tub] [--folds NAME]
        [--models pilotnet,cnn_lstm,feat_lstm*3] [--epochs N] [--jobs 2] [--threads 1] [--seeds 3]
        [--ensemble] [--mix NAME=RUN:W,RUN:W,...] [--set KEY=VALUE ...]
        [--variant NAME=KEY=VALUE[;KEY=VALUE] ...]   (KEY: a train key, or prepare.FLAG)

Everything a user would type goes through the `steertime` CLI (prepare, train, evaluate):

- `sessions`: `donkey_rc_sessions`, leave one session out — for each of the three
  sessions, `prepare --split session --test-session S` (validation: the final 15% of each
  training session), train every model, `evaluate` on the held-out session;
- `tub`: `donkey_rc_tub`, Donkeycar's split — records 0–4011 (the first 80%) for training
  and validation (20% val in blocks spread over the records, as Donkeycar's random split
  spreads it), records 4012–5014 for test. The benchmark writes
  two *views* of the tub under --work (a manifest whose `deleted_indexes` hides the other
  part; catalogs and images are symlinks), so the source is never modified.
- `tubval`: for choosing a tub recipe without the test records — three nested folds
  inside records 0–4011 (`TUBVAL`), each trained and validated like `tub` and scored on
  802 records it never saw (2,406 pooled).
- `sessval`: for choosing a *session* recipe on sessions — each fold trains (and
  validates, final 15%) on one session alone and scores the other two (`on_S`; every
  session is scored twice, 26,676 frames pooled). The pair trained on S and scored on U
  lies inside the test fold of the third session, so a recipe for test session T can be
  chosen on the two pairs that leave T out (`pairs` in results.json: RMSE per model,
  training session and scored session).

The first of --models (PilotNet by default; all its seeds pooled when it has several) is
the reference of every ratio. Each model
trains with its protocol's recipe (`RECIPES`, the flags a user passes). The per-frame
predictions of every fold are pooled, and the table gives pooled RMSE, each model's ratio
to PilotNet with a paired block-bootstrap 95% interval (2 s blocks, never across
sessions), throttle RMSE, training time and time to the best-validated epoch (`elapsed_s` when it
was on disk), beside the label
oracles of `label_noise.py`. With `--seeds K` every model trains K times (`train.seed`
0..K-1; runs `m`, `m_s1`, …) and a row `m ×K` pools them: its per-frame error is the RMS
over seeds, so its RMSE is the seed-averaged one and its paired interval covers frames
(not seeds; the per-seed rows show the spread between seeds). When
`benchmarks/peer_donkeycar/run.py` has written its predictions for the same folds into
--work, Donkeycar's models join the table, scored on the same frames (its seeded runs
`donkey_linear_s0`, … pooled the same way). With `--ensemble`, `steertime ensemble`
averages each model's K runs into one (`m_ens`), scored beside them; its training time is
the sum of its members'. `m*K` in --models trains that model alone K times. `feat_lstm`
reads frozen EfficientNet-Lite0 features that `steertime features` extracts once per
set of frames (the `sessions` folds share one store; each `tubval` fold has its own) —
their seconds are added to the first `feat_lstm` run of each fold. `--mix` builds
`steertime ensemble --weights` of named runs (e.g.
`mix=cnn_lstm:3,feat_lstm:1,feat_lstm_s1:1,feat_lstm_s2:1`). `--variant
cnn_lstm_l2=model.layers=2` adds a run named `cnn_lstm_l2` to what --models may name: the
recipe of the model its name starts with, plus those overrides — a lever and its baseline
in one table (`--models "cnn_lstm*2,cnn_lstm_l2*2"`, ratios against the first model's seeds
pooled); a `prepare.FLAG=VALUE` override changes the run's `steertime prepare` flags instead
(`cnn_lstm_r72=prepare.size=72x96`: its own caches in the fold folder, its predictions
joined to the others' on the same frames), and `cli.FLAG=VALUE` adds `--FLAG VALUE` to its
`steertime train` (`cnn_lstm_mix4=cli.seeds=4;cli.alternate=train.recon_weight=1`: four
members averaged into one run, every second with reconstruction, as a user trains it).
`{fold}` in a variant's value is the fold's folder, where its other runs are:
`cnn_lstm_kd=data.teacher={fold}/cnn_lstm,{fold}/cnn_lstm_s1` distils each fold's own two
seeds (runs that name `{fold}` train after the others); `{seed}` is the run's own seed
suffix (`feat_lstm_ft=train.init_from={fold}/feat_lstm{seed}`: run `feat_lstm_ft_s1`
starts from `feat_lstm_s1`).
Trained runs are reused by name; each fold's `eval/` holds the runs the latest command
scored, and `predictions_all.parquet` beside it every run ever scored there, for
averages of earlier variants.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from label_noise import floors
from steertime.atomic import atomic_file, write_json, write_text
from steertime.data.readers.donkey import tub_view
from steertime.data.splits import session_of
from steertime.evaluate import metrics as M

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SESSIONS = ("23-01-12_0", "23-01-12_1", "23-01-12_2")
TUB_TRAIN_RECORDS = 4012  # Donkeycar's split: records 0-4011 train, 4012-5014 test
OUTPUTS = "steering,throttle"
BLOCK = 40  # 2 s at 20 Hz
# What a user passes to `steertime prepare` and `steertime train`, per protocol (chosen on
# validation: docs/benchmarks.md). Mirroring is what lets sessions driven in opposite
# directions teach each other; on the single-direction tub it costs 25% (val 0.46 vs 0.37).
# Sessions: the native width with the top third (walls, people) cut; the tub: Donkeycar's
# own full native frame (level with the crop on its validation, and what its users have).
FRAME = {
    "sessions": ["--size", "80x160", "--crop", "40,0"],
    "tub": ["--size", "120x160"],
}
FRAME["tubval"] = FRAME["tub"]
FRAME["sessval"] = FRAME["sessions"]
FLIP = ["--set", "data.flip=true"]
PREPARE = "prepare."  # a --variant key with this prefix is a `steertime prepare` flag
CLI = "cli."  # ... and with this one a `steertime train` flag: cli.seeds=4 -> --seeds 4
# Frozen ImageNet features over a 3x5 grid (where the line is in the view), a small
# projection and heavy dropout: best of four on the selection fold (0.376-0.383, noisy).
FEATS = "{features}"  # replaced by the protocol's features store
FOLD = "{fold}"  # in a --variant's value: the fold's folder (its other runs are there)
SEED = "{seed}"  # ... and the run's own seed suffix (`_s1`; empty for seed 0)
ENCODER_CFG = "{grid: [3, 5]}"
FEAT = [
    "--model",
    "feat_lstm",
    "--set",
    f"data.features={FEATS}",
    "--set",
    f"model.encoder_cfg={ENCODER_CFG}",
    "--set",
    "model.dropout=0.5",
    "--set",
    "model.feat_dim=128",
]
RECIPES: dict[str, dict[str, list[str]]] = {
    "sessions": {
        **{m: ["--model", m, *FLIP] for m in ("pilotnet", "cnn_lstm", "motion_lstm")},
        "feat_lstm": [*FEAT, *FLIP],
    },
    "tub": {
        **{m: ["--model", m] for m in ("pilotnet", "cnn_lstm", "motion_lstm")},
        "feat_lstm": FEAT,
    },
}
RECIPES["tubval"] = RECIPES["tub"]
RECIPES["sessval"] = RECIPES["sessions"]
EPOCHS = {"sessions": 20, "tub": 30}  # the tub's validation RMSE still falls at epoch 20
EPOCHS["tubval"] = EPOCHS["tub"]
EPOCHS["sessval"] = EPOCHS["sessions"]
# Choosing a tub recipe without the test records (`--protocols tubval`): three nested
# folds inside records 0-4011, each scoring 802 records its training never saw (B and C
# keep 40 records, 2 s, out beside them as a guard; A is the fold of the fourteenth to
# nineteenth sessions); name -> (records trained and validated on, records scored).
TUBVAL = {
    "A": ([(0, 3210)], (3210, 4012)),
    "B": ([(842, 4012)], (0, 802)),
    "C": ([(0, 1565), (2447, 4012)], (1605, 2407)),
}


def steertime(*args: str, log: Path) -> float:
    """Run one CLI command (its output to `log`); returns wall seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(
            [sys.executable, "-m", "steertime", *args], stdout=f, stderr=subprocess.STDOUT
        )
    if r.returncode:
        raise SystemExit(f"steertime {' '.join(args)} failed ({r.returncode}); see {log}")
    return time.perf_counter() - t0


def folds(protocol: str, work: Path) -> list[dict]:
    """Each fold: a name, the cache to prepare (source + split flags) and what to score."""
    if protocol == "sessions":
        src = SHARED / "donkey_rc_sessions"
        return [
            {
                "name": s,
                "train": (src, ["--split", "session", "--test-session", s]),
                "test": None,  # the cache's own test split
            }
            for s in SESSIONS
        ]
    if protocol == "sessval":
        src = SHARED / "donkey_rc_sessions"
        return [
            {
                "name": f"on_{s}",
                "train": (
                    src,
                    [
                        "--split",
                        "session",
                        *(a for o in SESSIONS if o != s for a in ("--test-session", o)),
                    ],
                ),
                "test": None,  # the other two sessions: the cache's own test split
            }
            for s in SESSIONS
        ]
    src = SHARED / "donkey_rc_tub"
    n = 5015
    if protocol == "tubval":
        out = []
        for name, (kept, (a, b)) in TUBVAL.items():
            train, test = work / f"tubval_{name}_train", work / f"tubval_{name}_test"
            if not train.exists():
                shown = {i for lo, hi in kept for i in range(lo, hi)}
                tub_view(src, train, set(range(n)) - shown)
                tub_view(src, test, set(range(n)) - set(range(a, b)))
            split = ["--split", "blocks", "--val", "0.2", "--test", "0", "--guard", "20"]
            tail = ["--split", "tail", "--val", "0", "--test", "0"]
            out.append(
                {"name": f"{name}_{a}-{b - 1}", "train": (train, split), "test": (test, tail)}
            )
        return out
    train, test = work / "tub_train", work / "tub_test"
    if not train.exists():
        tub_view(src, train, set(range(TUB_TRAIN_RECORDS, n)))
        tub_view(src, test, set(range(TUB_TRAIN_RECORDS)))
    return [
        {
            "name": "last20",
            # Validation blocks spread over the records, so training also sees the minutes
            # just before the test ones (a tail split never trains on them): 0.319 vs
            # 0.332 on records 3210-4011 with both trained on records 0-3209.
            "train": (
                train,
                ["--split", "blocks", "--val", "0.2", "--test", "0", "--guard", "20"],
            ),
            "test": (test, ["--split", "tail", "--val", "0", "--test", "0"]),
        }
    ]


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """`NAME=KEY=VALUE[;KEY=VALUE]` -> {NAME: [KEY=VALUE, ...]}; a malformed one is refused."""
    out = {}
    for v in specs:
        name, _, overrides = v.partition("=")
        parts = overrides.split(";")
        if not name or not all("=" in o for o in parts):
            raise SystemExit(f"--variant wants NAME=KEY=VALUE[;KEY=VALUE], got {v!r}")
        out[name] = parts
    return out


def with_variants(
    recipes: dict[str, list[str]], models: list[str], variants: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Add each variant --models names: the recipe of the model its name starts with
    (`cnn_lstm_l2` -> `cnn_lstm`) plus its overrides, so a lever and its baseline train
    and score in one run (bench_faults.py's --variant, the same form)."""
    out = dict(recipes)
    for b in dict.fromkeys(base(m) for m in models):
        if b in recipes:
            continue
        if b not in variants:
            raise SystemExit(f"--models {b}: no such recipe ({', '.join(recipes)}) or --variant")
        model = max((r for r in recipes if b.startswith(r)), key=len, default=None)
        if model is None:
            raise SystemExit(
                f"--variant {b}: its name must start with a recipe's ({', '.join(recipes)})"
            )
        train = [o for o in variants[b] if not o.startswith((PREPARE, CLI))]
        flags = [o.removeprefix(CLI).partition("=") for o in variants[b] if o.startswith(CLI)]
        out[b] = [
            *recipes[model],
            *(x for o in train for x in ("--set", o)),
            *(x for flag, _, value in flags for x in (f"--{flag}", value)),
        ]
    return out


def frames_of(
    frame: list[str], models: list[str], variants: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Each model's `steertime prepare` flags: the protocol's, with a variant's
    `prepare.FLAG=VALUE` overrides replacing or adding `--FLAG VALUE` (a resolution or crop
    measured against the protocol's in one table, e.g. `prepare.size=72x96`)."""
    out = {}
    for m in models:
        flags = _pairs(frame)
        for o in variants.get(base(m), []):
            key, _, value = o.partition("=")
            if key.startswith(PREPARE):
                flags[f"--{key.removeprefix(PREPARE)}"] = value
        out[m] = [x for kv in flags.items() for x in kv]
    return out


def _pairs(flags: list[str]) -> dict[str, str]:
    return dict(zip(flags[::2], flags[1::2], strict=True))  # FRAME: flag/value pairs


def cache_suffix(frame: list[str], default: list[str]) -> str:
    """'' for the protocol's frame, else the flags that differ (`_size72x96`): one cache per
    frame in a fold folder."""
    flags, base_flags = _pairs(frame), _pairs(default)
    diff = [f"{k.lstrip('-')}{v}" for k, v in flags.items() if base_flags.get(k) != v]
    return "".join(f"_{d.replace(',', '-')}" for d in diff)


def check_frames(
    frames: dict[str, list[str]],
    frame: list[str],
    recipes: dict[str, list[str]],
    mixes: dict[str, list[tuple[str, float]]],
) -> None:
    """Refuse, before anything trains, what a `prepare.*` variant cannot do: a mix of
    differently prepared runs (`steertime ensemble` needs members that see the same frames)
    and a features model (it reads the protocol's one features store)."""
    for name, parts in mixes.items():
        if len({_seen(frames[m]) for m, _ in parts}) > 1:
            raise SystemExit(f"--mix {name}: its members are prepared differently")
    for m, f in frames.items():
        if f != frame and any(FEATS in a for a in recipes[base(m)]):
            raise SystemExit(f"--variant {base(m)}: a features model takes no prepare.* key")


# `prepare` flags that choose which frames train and which validate, not what a frame looks
# like: members that differ only in these (bagging: `prepare.seed=K`) see the same frames.
SPLIT_FLAGS = frozenset({"--split", "--seed", "--val", "--test", "--guard"})


def _seen(flags: list[str]) -> tuple:
    return tuple(sorted((k, v) for k, v in _pairs(flags).items() if k not in SPLIT_FLAGS))


def ensembles(models: list[str]) -> dict[str, list[str]]:
    """`m_ens` -> the seeded runs of `m` it averages (models trained with several seeds)."""
    out: dict[str, list[str]] = {}
    for m in models:
        out.setdefault(f"{base(m)}_ens", []).append(m)
    return {k: v for k, v in out.items() if len(v) > 1}


def seed_suffix(run: str) -> str:
    """`cnn_lstm_s2` -> `_s2`, `cnn_lstm` -> ``: what `{seed}` in a variant becomes."""
    return run.removeprefix(base(run))


def base(run: str) -> str:
    """`cnn_lstm_s2` -> `cnn_lstm`: the model a seeded run name trains."""
    head, sep, tail = run.rpartition("_s")
    return head if sep and tail.isdigit() else run


def features_store(root: Path, cache: Path) -> Path:
    """Where a fold's frozen features live: one store per cache content, so folds that
    prepare the same frames (the sessions' splits) extract once and folds over other
    records (tubval's) each get their own instead of being refused by the first's store."""
    content = json.loads((cache / "manifest.json").read_text())["content_hash"]
    return root / f"features_{content[:12]}"


def waves(models: list[str], recipes: dict[str, list[str]]) -> list[list[str]]:
    """Training order: a run whose overrides name other runs of its fold (`{fold}/NAME`,
    e.g. its teachers) trains in a wave after theirs — students of students included."""
    ref = re.compile(re.escape(FOLD) + r"/([^/,]+)")  # the run named after `{fold}/`
    named = {
        m: {n for a in recipes[base(m)] for n in ref.findall(a.replace(SEED, seed_suffix(m)))}
        & set(models)
        for m in models
    }
    out, done = [], set()
    while len(done) < len(models):
        wave = [m for m in models if m not in done and named[m] <= done]
        if not wave:
            raise SystemExit(f"--variant: runs that name each other: {sorted(set(models) - done)}")
        out.append(wave)
        done |= set(wave)
    return out


def run_fold(
    fold: dict,
    folder: Path,
    models: list[str],
    recipes: dict,
    epochs: int,
    jobs: int,
    frame: list[str],
    ensemble: bool = False,
    mixes: dict[str, list[tuple[str, float]]] | None = None,
    threads: int = 0,
    overrides: list[str] | None = None,
    frames: dict[str, list[str]] | None = None,
    track: bool = False,
) -> dict:
    """Prepare, train, and score every model on one fold. `frames`: a model's own prepare
    flags where a variant changes them (`frames_of`); it gets its own caches, and its
    predictions are joined to the others' on the same frames. `track`: every run also
    scores each epoch on the fold's held-out frames (`train.track`, logged only), and the
    fold returns those curves (`curves`: model -> elapsed_s, held-out steering RMSE)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = frames or {}
    src, split = fold["train"]
    sfx_of = {m: cache_suffix(frames.get(m, frame), frame) for m in models}
    caches: dict[str, tuple[Path, Path, str]] = {}  # suffix -> train cache, scored cache, split
    for m in {sfx: m for m, sfx in sfx_of.items()}.values():
        f, sfx = frames.get(m, frame), sfx_of[m]
        cache = folder / f"cache{sfx}"
        if not cache.exists():
            steertime(
                "prepare", str(src), "--out", str(cache), *f, *split, log=folder / f"p{sfx}.log"
            )
        score_on, score_split = cache, "test"
        if fold["test"] is not None:
            score_on, score_split = folder / f"cache_test{sfx}", "all"
            tsrc, tsplit = fold["test"]
            if not score_on.exists():
                steertime(
                    "prepare",
                    str(tsrc),
                    "--out",
                    str(score_on),
                    *f,
                    *tsplit,
                    log=folder / f"pt{sfx}.log",
                )
        caches[sfx] = (cache, score_on, score_split)

    feats, feat_seconds = features_store(folder.parent, caches[""][0]), 0.0
    if any(FEATS in a for m in models for a in recipes[base(m)]):
        flip = ["--flip"] if any(a == "data.flip=true" for a in recipes["feat_lstm"]) else []
        feat_seconds = steertime(
            "features",
            str(caches[""][0]),
            "--out",
            str(feats),
            "--encoder-cfg",
            ENCODER_CFG,
            *flip,
            log=folder / "features.log",
        )
        done = feats / "seconds.txt"
        if not done.exists():  # the first fold extracts, the others find the store
            write_text(done, f"{feat_seconds:.1f}\n")
        feat_seconds = float(done.read_text())

    def train(m: str) -> float:
        run = folder / m
        if not (run / "checkpoints" / "best").exists():
            secs = steertime(
                "train",
                "--data",
                str(caches[sfx_of[m]][0]),
                "--outputs",
                OUTPUTS,
                "--epochs",
                str(epochs),
                "--set",
                "train.patience=8",
                "--set",
                f"train.threads={threads or max(1, 2 // jobs)}",
                *(
                    a.replace(FEATS, str(feats))
                    .replace(FOLD, str(folder))
                    .replace(SEED, seed_suffix(m))
                    for a in recipes[base(m)]
                ),
                *(["--set", f"train.seed={m.rpartition('_s')[2]}"] if base(m) != m else []),
                *(a for o in overrides or [] for a in ("--set", o)),
                *(tracked(*caches[sfx_of[m]][1:]) if track else []),
                "--out",
                str(run),
                log=folder / f"{m}.log",
            )
            write_text(run / "train_seconds.txt", f"{secs:.1f}\n")
        return float((run / "train_seconds.txt").read_text())

    with ThreadPoolExecutor(jobs) as pool:
        done = {
            m: s
            for wave in waves(models, recipes)
            for m, s in zip(wave, pool.map(train, wave), strict=True)
        }
    seconds = {m: done[m] for m in models}
    if "feat_lstm" in seconds:  # the one extraction every feat_lstm run of the fold reads
        seconds["feat_lstm"] += feat_seconds
    to_best, curves = {}, {}
    for m in models:
        if not (folder / m / "metrics.csv").exists():  # `--seeds K`: an average, no one curve
            continue
        mc = pd.read_csv(folder / m / "metrics.csv")
        if TRACKED in mc:  # a run reused from an untracked benchmark has no curve
            curves[m] = mc[["elapsed_s", TRACKED]].to_numpy()
        best = int(mc["val_rmse_steering"].idxmin())
        # elapsed_s (runs since the twenty-sixth session): set-up, steps, validation and the
        # checkpoint up to the moment that epoch was on disk; before it, its steps only
        if "elapsed_s" in mc:
            to_best[m] = float(mc["elapsed_s"].iloc[best])
        else:
            to_best[m] = float(mc["seconds"].iloc[: best + 1].sum())
    # `steertime ensemble` over each model's seeds: its cost is every member's training.
    averaged = ensembles(models) if ensemble else {}
    averaged |= {name: [m for m, _ in parts] for name, parts in (mixes or {}).items()}
    for name, members in averaged.items():  # members share a frame: check_frames
        weights = dict((mixes or {}).get(name, []))
        steertime(
            "ensemble",
            *[str(folder / m) for m in members],
            *(["--weights", ",".join(f"{weights[m]:g}" for m in members)] if weights else []),
            "--out",
            str(folder / name),
            "--overwrite",
            log=folder / f"{name}.log",
        )
        seconds[name] = sum(seconds[m] for m in members)
        if all(m in to_best for m in members):
            to_best[name] = sum(to_best[m] for m in members)
        sfx_of[name] = sfx_of[members[0]]
    preds = None
    for sfx, (_, score_on, score_split) in caches.items():
        runs = [str(folder / m) for m in seconds if sfx_of[m] == sfx]
        ev = folder / f"eval{sfx}"
        steertime(
            "evaluate",
            runs[-1],
            "--data",
            str(score_on),
            "--split",
            score_split,
            *[a for r in runs[:-1] for a in ("--compare", r)],
            "--out",
            str(ev),
            log=folder / f"eval{sfx}.log",
        )
        p = pd.read_parquet(ev / "predictions.parquet")
        preds = p if preds is None else merge_predictions(preds, p, "differently prepared runs")
    keep = folder / "predictions_all.parquet"
    old = pd.read_parquet(keep) if keep.is_file() else None
    with atomic_file(keep) as f:
        merge_predictions(old, preds).to_parquet(f, index=False)
    preds["fold"] = fold["name"]
    return {"preds": preds, "train_seconds": seconds, "seconds_to_best": to_best, "curves": curves}


TRACKED = "track_rmse_steering"


def tracked(cache: Path, split: str) -> list[str]:
    """`steertime train` flags that score every epoch on the frames the fold scores."""
    return ["--set", f"train.track={cache}", "--set", f"train.track_split={split}"]


def first_reached(
    curves: dict, fold_targets: dict[str, float], cols: list[str]
) -> float | str | None:
    """Seconds until a run first scored at or under the target on held-out frames, summed
    over the folds (the folds train one after another), averaged over a pooled row's runs;
    "never" when a run never did; None when a run has no curve (not tracked)."""
    per_run = []
    for c in cols:
        total = 0.0
        for fold, target in fold_targets.items():
            curve = curves.get(fold, {}).get(c)
            if curve is None:
                return None
            hit = curve[curve[:, 1] <= target]
            if not len(hit):
                return "never"
            total += float(hit[0, 0])
        per_run.append(total)
    return float(np.mean(per_run))


def pooled_reached(
    curves: dict, fold_frames: dict[str, int], target: float, cols: list[str]
) -> float | str | None:
    """The protocol's reading: after epoch e of every fold, the folds' held-out errors
    pooled over their frames; seconds (summed over folds) until that pooled error is at or
    under the peer's pooled `target`. A fold that stopped early keeps its last epoch."""
    per_run = []
    for c in cols:
        runs = [curves.get(f, {}).get(c) for f in fold_frames]
        if any(r is None for r in runs):
            return None
        n = np.array(list(fold_frames.values()), dtype=float)
        hit = None
        for e in range(max(len(r) for r in runs)):
            at = [r[min(e, len(r) - 1)] for r in runs]
            rmse = float(np.sqrt(np.sum(n * np.array([a[1] for a in at]) ** 2) / n.sum()))
            if rmse <= target:
                hit = float(sum(a[0] for a in at))
                break
        if hit is None:
            return "never"
        per_run.append(hit)
    return float(np.mean(per_run))


def merge_predictions(old: pd.DataFrame | None, new: pd.DataFrame, what: str = "") -> pd.DataFrame:
    """Every run ever scored on a fold, one column per run and signal: `eval/` holds only
    the runs the latest command named, so a mix or an offline average of earlier variants
    needs their predictions kept here. A run scored again replaces its old columns."""
    if old is None:
        return new
    keys = ["drive", "t"]
    if not old[keys].equals(new[keys]) or not np.allclose(
        old["true_steering"], new["true_steering"]
    ):
        raise SystemExit(
            f"{what} scored different frames"
            if what
            else "the fold's frames changed since its earlier scores: "
            "remove predictions_all.parquet"
        )
    runs = [c for c in new.columns if ":" in c]
    return pd.concat([old.drop(columns=[c for c in runs if c in old]), new[runs]], axis=1)


def peer_predictions(work: Path, protocol: str, preds: pd.DataFrame) -> list[str]:
    """Join Donkeycar's per-frame predictions (peer_donkeycar/run.py) on the frame time.

    Frames of folds Donkeycar was not run on stay NaN; they are left out of its rows."""
    f = work / "peer_donkeycar" / f"{protocol}_predictions.csv"
    if not f.is_file():
        return []
    peer = pd.read_csv(f)
    key = (preds["t"] * 1000).round().astype("int64")
    names = []
    for col in [c for c in peer.columns if c.endswith(":steering") or c.endswith(":throttle")]:
        # A command beyond full lock steers at full lock: the rule steertime's outputs follow
        # (`data.clip_outputs`); it moves Donkeycar's RMSE by under 0.001 on the tub.
        vals = peer[col].clip(-1.0, 1.0) if col.endswith(":steering") else peer[col]
        lookup = dict(zip(peer["timestamp_ms"].astype("int64"), vals, strict=True))
        preds[col] = key.map(lookup)
        names.append(col.split(":")[0])
    return sorted(set(names))


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))


def peer_seconds(work: Path, protocol: str) -> dict[str, float]:
    """Donkeycar's training seconds per run, summed over the folds it was trained on."""
    f = work / "peer_donkeycar" / f"{protocol}_timing.json"
    out: dict[str, float] = {}
    for key, t in (json.loads(f.read_text()) if f.is_file() else {}).items():
        run = f"donkey_{key.split(':', 1)[1]}"
        out[run] = out.get(run, 0.0) + t["train_seconds"]
    return out


def _seconds(extra: dict, key: str, cols: list[str]) -> float | None:
    """Mean over runs of a per-run time (a pooled row's runs), None if any is unknown."""
    vals = [extra.get(key, {}).get(c) for c in cols]
    return None if any(v is None for v in vals) else float(np.mean(vals))


def pooled(names: list[str]) -> dict[str, list[str]]:
    """Display name -> the prediction columns it stands for: every run alone, and each
    model trained with several seeds (`m`, `m_s1`, … or `m_s0`, `m_s1`, …) as `m ×K`."""
    out = {n: [n] for n in names}
    for b in dict.fromkeys(base(n) for n in names):
        runs = [n for n in names if base(n) == b]
        if len(runs) > 1:
            out[f"{b} ×{len(runs)}"] = runs
    return out


def _err(preds: pd.DataFrame, cols: list[str], signal: str = "steering") -> np.ndarray:
    """Per-frame error; over several runs the RMS of their errors, so that its square
    averages the runs' squared errors (what a seed-averaged RMSE pools)."""
    true = preds[f"true_{signal}"].to_numpy()
    if cols == ["predict_zero"]:
        return -true
    sq = np.mean([(preds[f"{c}:{signal}"].to_numpy() - true) ** 2 for c in cols], axis=0)
    return np.sqrt(sq)


def paired_row(preds: pd.DataFrame, m: str, ref: str, groups_of: dict[str, list[str]]) -> dict:
    """RMSE of `m` on these frames, and its ratio to `ref` with a paired interval."""
    groups = preds["fold"].to_numpy()
    cols = groups_of.get(m, [m])

    def err(name: str) -> np.ndarray:
        return _err(preds, groups_of.get(name, [name]))

    e, r = err(m), err(ref)
    rmse = float(np.sqrt(np.mean(e**2)))
    return {
        "steering": rmse,
        "steering_ci95": M.block_bootstrap_rmse(e, BLOCK, groups=groups),
        f"vs_{ref}": rmse / float(np.sqrt(np.mean(r**2))),
        f"vs_{ref}_ci95": M.block_bootstrap_ratio(e, r, BLOCK, groups=groups),
        "per_fold": {
            f: float(np.sqrt(np.mean(e[groups == f] ** 2))) for f in dict.fromkeys(groups)
        },
        **(
            {"throttle": float(np.sqrt(np.mean(_err(preds, cols, "throttle") ** 2)))}
            if all(f"{c}:throttle" in preds for c in cols)
            else {}
        ),
    }


def _drive_keys(preds: pd.DataFrame) -> list[str]:
    """One group per drive a fold scored: under `sessval` two folds score the same drive."""
    return ["fold", "drive"] if "fold" in preds else ["drive"]


def pairs(preds: pd.DataFrame, models: list[str], ref: str) -> dict:
    """`sessval`: each model's RMSE per (training session, scored session), and its ratio to
    `ref` over the two pairs that leave each session out — what a recipe for a test on
    that session may be chosen on (`choose_for`)."""
    groups_of = pooled(models)
    trained = preds["fold"].str.removeprefix("on_").to_numpy()
    # evaluate names a scored stretch `DRIVE[start:stop]`
    scored = preds["drive"].map(lambda d: session_of(d.rsplit("[", 1)[0])).to_numpy()
    sessions = sorted(set(trained))
    out: dict = {}
    sq_ref = _err(preds, groups_of[ref]) ** 2
    for m in [*groups_of, "predict_zero"]:
        sq = _err(preds, groups_of.get(m, [m])) ** 2
        out[m] = {
            "pair": {
                f"{a}->{b}": float(np.sqrt(sq[(trained == a) & (scored == b)].mean()))
                for a in sessions
                for b in sessions
                if a != b
            },
            "choose_for": {
                t: float(np.sqrt(sq[away].mean() / sq_ref[away].mean()))
                for t in sessions
                for away in [(trained != t) & (scored != t)]
            },
        }
    return out


def memory_oracle(preds: pd.DataFrame, lags: tuple[int, ...], ref: str = "pilotnet") -> float:
    """What the truth's own past could add to PilotNet: RMSE of a least-squares fit, on the
    test frames themselves (optimistic), of the angle from PilotNet's prediction and the
    *true* angle `lags` frames earlier, per drive. With `lags=()` it only recalibrates
    PilotNet (scale and offset), so the difference is what memory of the driver's recent
    steering could be worth at best."""
    sq, n = 0.0, 0
    for _, g in preds.groupby(_drive_keys(preds), sort=False):
        y, x = g["true_steering"].to_numpy(), g[f"{ref}:steering"].to_numpy()
        k = max(lags, default=0)
        a = np.stack([x[k:], *(y[k - j : len(y) - j] for j in lags), np.ones(len(y) - k)], 1)
        w, *_ = np.linalg.lstsq(a, y[k:], rcond=None)
        sq, n = sq + float(np.sum((a @ w - y[k:]) ** 2)), n + len(y) - k
    return float(np.sqrt(sq / n))


def table(
    preds: pd.DataFrame,
    models: list[str],
    peers: list[str],
    extra: dict,
    curves: dict | None = None,
) -> dict:
    # The reference of every ratio: the first of --models (PilotNet unless --models says
    # otherwise), all its seeds pooled when it has several.
    groups_of = pooled(models) | pooled(peers)
    ref = next((k for k, v in groups_of.items() if len(v) > 1 and models[0] in v), models[0])
    rows = list(pooled(models))
    segs = [g["true_steering"].to_numpy() for _, g in preds.groupby(_drive_keys(preds), sort=False)]
    out: dict = {"frames": len(preds), "reference": ref, "oracles": floors(segs)}
    # The memory oracles refit one model's predictions: the reference's first run.
    one = models[0]
    out["oracles"].update(
        oracle_model=one,
        reference_recalibrated=memory_oracle(preds, (), one),
        reference_plus_true_angle_5_to_8_frames_earlier=memory_oracle(preds, (5, 6, 7, 8), one),
        reference_plus_true_angle_1_frame_earlier=memory_oracle(preds, (1,), one),
    )
    for m in [*rows, "predict_zero"]:
        out[m] = {
            **paired_row(preds, m, ref, groups_of),
            **{k: _seconds(extra, k, groups_of.get(m, [m])) for k in extra},
        }
    # Donkeycar on the frames it was run on, each model against it on exactly those frames
    # Against each Donkeycar model: its seeds pooled when it was run with several.
    for peer in [k for k in pooled(peers) if "×" in k] or peers:
        cols = groups_of[peer]
        mine = preds[preds[[f"{c}:steering" for c in cols]].notna().all(axis=1)]
        out[f"vs_{peer}"] = {
            "frames": len(mine),
            "folds": sorted(set(mine["fold"])),
            "oracles": floors(
                [g["true_steering"].to_numpy() for _, g in mine.groupby(_drive_keys(mine))]
            ),
            **{m: paired_row(mine, m, peer, groups_of) for m in [peer, *rows]},
        }
        # Time: Donkeycar's training against ours to the kept checkpoint (an upper bound
        # on the time to reach its accuracy, where we reach it), same machine, same run.
        for m in [peer, *rows]:
            cols = groups_of.get(m, [m])
            out[f"vs_{peer}"][m]["train_seconds"] = _seconds(extra, "train_seconds", cols)
            out[f"vs_{peer}"][m]["seconds_to_best"] = _seconds(extra, "seconds_to_best", cols)
            # With --track: when each run first steered as well as this peer on these
            # frames (its per-fold error the target), read from the runs' own logs.
            if curves and m != peer:
                targets = out[f"vs_{peer}"][peer]["per_fold"]
                out[f"vs_{peer}"][m]["seconds_to_peer"] = first_reached(curves, targets, cols)
                if len(targets) > 1:
                    n = mine.groupby("fold").size().to_dict()
                    target = out[f"vs_{peer}"][peer]["steering"]
                    out[f"vs_{peer}"][m]["seconds_to_peer_pooled"] = pooled_reached(
                        curves, {f: n[f] for f in targets}, target, cols
                    )
    return out


def _reached(s: float | str | None, peer: str, how: str = "") -> str:
    if s is None:
        return ""
    how = f" ({how})" if how else ""
    if s == "never":
        return f"; never as good as `{peer}` on these frames in any epoch{how}"
    return f"; first as good as `{peer}` on these frames after {s:.0f} s{how}"


def _ci(c: list[float]) -> str:
    return f"[{c[0]:.3f}, {c[1]:.3f}]"


def markdown(protocol: str, res: dict, models: list[str]) -> str:
    models = list(pooled(models))
    """The tables docs/benchmarks.md quotes."""
    ref = res["reference"]
    folds = list(res[ref]["per_fold"])
    head = ["predictor", "steering RMSE (95% CI)", f"vs `{ref}` (95% CI)", *folds]
    lines = [f"{protocol}: {res['frames']} held-out frames", "", "| " + " | ".join(head)]
    lines[-1] += " | throttle RMSE | train s | s to best |"
    lines.append("|" + " --- |" * (len(head) + 3))
    for m in [*models, "predict_zero"]:
        r = res[m]
        cells = [
            f"`{m}`",
            f"{r['steering']:.4f} {_ci(r['steering_ci95'])}",
            f"{r['vs_' + ref]:.3f}x {_ci(r['vs_' + ref + '_ci95'])}",
            *(f"{r['per_fold'][f]:.4f}" for f in folds),
            f"{r['throttle']:.4f}" if "throttle" in r else "–",
            f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–",
            f"{r['seconds_to_best']:.0f}" if r.get("seconds_to_best") else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    o = res["oracles"]
    lines.append(
        f"\nOracles on the same frames: previous true value {o['oracle_previous_true']:.4f}, "
        f"centred mean of 3 / 5 / 9 true values {o['oracle_centred_mean_3']:.4f} / "
        f"{o['oracle_centred_mean_5']:.4f} / {o['oracle_centred_mean_9']:.4f}; "
        f"`{o['oracle_model']}` recalibrated on the test frames "
        f"{o['reference_recalibrated']:.4f}, plus the true angle "
        f"5–8 frames earlier {o['reference_plus_true_angle_5_to_8_frames_earlier']:.4f}, plus "
        f"the true angle 1 frame earlier {o['reference_plus_true_angle_1_frame_earlier']:.4f}."
    )
    for key in [k for k in res if k.startswith("vs_donkey")]:
        v, peer = res[key], key.removeprefix("vs_")
        lines.append(f"\nAgainst `{peer}` on its {v['frames']} frames ({', '.join(v['folds'])}):")
        for m in [k for k in v if k not in ("frames", "folds", "oracles")]:
            r = v[m]
            lines.append(
                f"- `{m}`: {r['steering']:.4f} {_ci(r['steering_ci95'])}, "
                f"{r['vs_' + peer]:.3f}x {_ci(r['vs_' + peer + '_ci95'])}"
                + (f", throttle {r['throttle']:.4f}" if "throttle" in r else "")
                + (f", trained {r['train_seconds']:.0f} s" if r.get("train_seconds") else "")
                + (f" (best at {r['seconds_to_best']:.0f} s)" if r.get("seconds_to_best") else "")
                + _reached(r.get("seconds_to_peer_pooled"), peer, "pooled over the folds")
                + _reached(
                    r.get("seconds_to_peer"), peer, "fold by fold" if len(v["folds"]) > 1 else ""
                )
            )
    if "pairs" in res:
        sessions = list(res["pairs"][ref]["choose_for"])
        lines += ["", "| predictor | " + " | ".join(f"vs `{ref}` for test {t}" for t in sessions)]
        lines[-1] += " | " + " | ".join(res["pairs"][ref]["pair"]) + " |"
        lines.append("|" + " --- |" * (1 + len(sessions) + len(res["pairs"][ref]["pair"])))
        for m, r in res["pairs"].items():
            cells = [f"{v:.3f}x" for v in r["choose_for"].values()]
            cells += [f"{v:.4f}" for v in r["pair"].values()]
            lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--protocols", default="sessions,tub")
    ap.add_argument("--models", default="pilotnet,cnn_lstm")
    ap.add_argument("--epochs", type=int, default=0, help="default: EPOCHS per protocol")
    ap.add_argument("--jobs", type=int, default=2, help="models trained at once")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads per training (default: 2 / --jobs); 1 beside a Donkeycar run",
    )
    ap.add_argument("--seeds", type=int, default=1, help="runs of every model (train.seed)")
    ap.add_argument("--folds", default="", help="only these fold names (default: all)")
    ap.add_argument(
        "--track",
        action="store_true",
        help="every run scores each epoch on the held-out frames (train.track, logged, never "
        "used to choose); the Donkeycar lines then say when each run first reached that "
        "model's error (seconds trained, summed over folds)",
    )
    ap.add_argument(
        "--ensemble",
        action="store_true",
        help="with --seeds K: also score `steertime ensemble` of each model's K runs (m_ens)",
    )
    ap.add_argument(
        "--mix",
        nargs="*",
        default=[],
        help="NAME=RUN:W,RUN:W,...: a weighted `steertime ensemble` of these runs, scored too",
    )
    ap.add_argument(
        "--variant",
        nargs="*",
        default=[],
        help="NAME=KEY=VAL[;KEY=VAL]: a run NAME in --models, trained with the recipe of the "
        "model its name starts with plus these overrides, e.g. --variant "
        "'cnn_lstm_l2=model.layers=2' --models 'cnn_lstm*2,cnn_lstm_l2*2'",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a `steertime train --set` override for every model (repeatable)",
    )
    a = ap.parse_args()
    models = []
    for spec in a.models.split(","):
        m, _, k = spec.partition("*")
        models += [m if i == 0 else f"{m}_s{i}" for i in range(int(k or a.seeds))]
    mixes = {
        name: [(r, float(w)) for r, _, w in (p.partition(":") for p in parts.split(","))]
        for name, _, parts in (x.partition("=") for x in a.mix)
    }
    unknown = {r for parts in mixes.values() for r, _ in parts} - set(models)
    if unknown:
        raise SystemExit(f"--mix names runs that --models does not train: {sorted(unknown)}")
    variants = parse_variants(a.variant)
    results = {}
    for protocol in a.protocols.split(","):
        recipes = with_variants(RECIPES[protocol], models, variants)
        frames = frames_of(FRAME[protocol], models, variants)
        check_frames(frames, FRAME[protocol], recipes, mixes)
        fold_list = folds(protocol, a.work)
        if a.folds:  # a first look on some folds; the pooled goal needs them all
            fold_list = [f for f in fold_list if f["name"] in a.folds.split(",")]
            if not fold_list:
                raise SystemExit(f"--folds {a.folds}: none of {protocol}'s folds")
        fold_res = [
            run_fold(
                f,
                a.work / protocol / f["name"],
                models,
                recipes,
                a.epochs or EPOCHS[protocol],
                a.jobs,
                FRAME[protocol],
                a.ensemble,
                mixes,
                a.threads,
                a.overrides,
                frames,
                a.track,
            )
            for f in fold_list
        ]
        curves = {f["name"]: r["curves"] for f, r in zip(fold_list, fold_res, strict=True)}
        preds = pd.concat([r["preds"] for r in fold_res], ignore_index=True)
        peers = peer_predictions(a.work, protocol, preds)
        scored = [*models, *(ensembles(models) if a.ensemble else []), *mixes]
        extra = {  # None where a fold has no figure (a `--seeds K` average has no curve)
            k: {m: _total([r[k].get(m) for r in fold_res]) for m in scored}
            for k in ("train_seconds", "seconds_to_best")
        }
        extra["train_seconds"] |= peer_seconds(a.work, protocol)
        results[protocol] = table(preds, scored, peers, extra, curves if a.track else None)
        if protocol == "sessval":
            results[protocol]["pairs"] = pairs(preds, scored, results[protocol]["reference"])
        print(markdown(protocol, results[protocol], scored), "\n", flush=True)
    write_json(a.work / "results.json", json.loads(json.dumps(results, default=float)))


if __name__ == "__main__":
    main()
