"""`steertime demo`: the whole path on a fresh machine, no download, ≤ 10 minutes on 2 cores.

simulate → prepare → train pilotnet and cnn_lstm → evaluate both against baselines →
drive both closed-loop on unseen roads → one HTML report (and an overlay video).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from steertime.atomic import write_json
from steertime.data import PrepareConfig, SplitConfig, prepare
from steertime.data.preprocess import FrameSpec
from steertime.evaluate import evaluate_to_dir
from steertime.evaluate.render import render
from steertime.sim import compare_drives, drive, heldout_seeds, simulate
from steertime.sim.expert import ExpertParams
from steertime.sim.world import FPS
from steertime.stream import Predictor
from steertime.stream.run import load_source
from steertime.train import TrainConfig, apply_overrides, train

MODELS = ("pilotnet", "cnn_lstm")
CROP = (50, 0)  # the camera's sky rows carry no steering information
# The expert reacts this many frames late; a model with memory learns to copy that
# lateness unless the labels are led by it (see data.lead in docs/training.md).
EXPERT_DELAY_FRAMES = round(ExpertParams().delay * FPS)
# Each model's own settings on top of demo_train_config, chosen on held-out validation
# roads over three training seeds (docs/benchmarks.md, fifth session). PilotNet keeps
# unled labels: it answers the current frame already, and a lead did not help it.
RECIPES: dict[str, tuple[str, ...]] = {
    "pilotnet": (),
    "cnn_lstm": ("train.seq_len=5", f"data.lead={EXPERT_DELAY_FRAMES}"),
}


def prepare_demo_cache(recording: Path, cache: Path) -> None:
    """66x200 frames without the sky rows; the final 15% of each drive held out."""
    prepare(
        recording,
        cache,
        PrepareConfig(
            frame=FrameSpec(66, 200, *CROP), split=SplitConfig("tail", 0.15, 0.15, guard=20)
        ),
        overwrite=True,
    )


def demo_train_config(
    model: str, epochs: int, cache: Path, run: Path, overrides: Sequence[str] = ()
) -> TrainConfig:
    """The demo's recipe (also the closed-loop benchmarks'): every epoch runs, no early stop,
    and the expert's speed command `target_speed` and the car's steering torque are learnt
    beside steering and speed."""
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"model.name={model}",
            f"train.epochs={epochs}",
            "train.patience=100",
            "optim.lr=1e-3",
            "optim.warmup_steps=20",
            "data.outputs=steering,speed,target_speed,torque",
            *overrides,
        ],
    )
    cfg.data.cache, cfg.out = str(cache), str(run)
    return cfg


def run_demo(
    out: Path,
    minutes: float = 6.0,
    epochs: int = 12,
    roads: int = 3,
    road_seconds: float = 60.0,
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rec = out / "drive"
    if not rec.exists():
        log(f"simulating {minutes:g} minutes of expert driving → {rec}")
        simulate(rec, minutes, seed=0)
    cache = out / "cache"
    log(f"preparing {cache}")
    prepare_demo_cache(rec, cache)
    runs = {}
    for m in MODELS:
        run = out / "runs" / m
        if not (run / "checkpoints" / "best").exists():
            log(f"training {m} for {epochs} epochs → {run}")
            train(demo_train_config(m, epochs, cache, run, RECIPES[m]), progress=True)
        runs[m] = run
    seeds = heldout_seeds(0, roads)
    closed, driven = {}, {}
    for m, run in runs.items():
        log(f"driving {m} closed-loop on {roads} unseen roads")
        driven[m] = drive(Predictor.from_run(run), seeds, road_seconds)
        closed[m] = driven[m].summary()
    paired = compare_drives(driven["cnn_lstm"].roads, driven["pilotnet"].roads)
    write_json(out / "closed_loop.json", closed)
    write_json(out / "closed_loop_compare.json", {"a": "cnn_lstm", "b": "pilotnet", **paired})
    log("evaluating on the held-out test block")
    section = _closed_loop_section(closed, paired)
    evaluate_to_dir(
        runs["cnn_lstm"], cache, out / "eval", "test", [runs["pilotnet"]], sections=[section]
    )
    log(f"rendering {out / 'overlay.mp4'} (cnn_lstm on the last recorded road's final 30 s)")
    last = load_source(rec)[-1]
    n = len(last)
    clip = last.slice(np.arange(max(0, n - 300), n), last.name)
    render(Predictor.from_run(runs["cnn_lstm"]), [clip], out / "overlay.mp4", heldout_from=cache)
    return out / "eval" / "report.html"


def _ci_cell(ci: list[float] | None, roads: int) -> str:
    if ci is None:  # steertime.sim.compare.MIN_ROADS
        return f"– ({roads} roads: too few for an interval)"
    return f"{ci[0]:+.3f} – {ci[1]:+.3f}"


def _paired_table(c: dict) -> str:
    """cnn_lstm minus pilotnet on the same roads (see steertime.sim.compare)."""
    au = c["autonomy_pct"]
    rows = [("autonomy %", au["diff"], au["ci95"], "")]
    for name, label in (
        ("mean_abs_offset", "mean |offset| m"),
        ("max_abs_offset", "worst |offset| per road m"),
        ("mean_abs_wheel_rate", "|wheel rate| deg/s"),
    ):
        m = c[name]
        rows.append((label, m["diff"], m["ci95"], f"{m['a_better_roads']} / {m['b_better_roads']}"))
    body = "".join(
        f"<tr><td>{label}</td><td>{d:+.3f}</td><td>{_ci_cell(ci, c['road_seeds'])}</td>"
        f"<td>{n}</td></tr>"
        for label, d, ci, n in rows
    )
    return (
        "<h3>cnn_lstm minus pilotnet, paired on the same roads</h3>"
        '<table id="closed-loop-paired"><tr><th>measure</th><th>difference</th>'
        f"<th>95% CI</th><th>roads cnn_lstm / pilotnet better</th></tr>{body}</table>"
        "<p>Lower offsets and wheel rate are better. An interval that contains 0 cannot "
        "tell the two apart; the offsets often can when autonomy cannot.</p>"
    )


def _closed_loop_section(closed: dict, paired: dict) -> str:
    """The report's closed-loop section (`write_report` places it before the config)."""
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{r['autonomy_pct']:.1f}%</td>"
        f"<td>{r['autonomy_ci95_pct'][0]:.1f}–{r['autonomy_ci95_pct'][1]:.1f}%</td>"
        f"<td>{r['interventions']}</td>"
        f"<td>{r['interventions_per_km']:.2f}</td><td>{r['mean_abs_offset_m']:.3f}</td>"
        f"<td>{r['mean_abs_wheel_rate_degps']:.1f}</td>"
        f"<td>{_fmt_nm(r.get('torque_rmse_nm'))}</td><td>{r['km']:.2f}</td></tr>"
        for m, r in closed.items()
    )
    section = (
        '<h2>Closed loop on unseen roads</h2><table id="closed-loop"><tr><th>model</th>'
        "<th>autonomy</th><th>95% CI</th><th>interventions</th><th>per km</th>"
        "<th>mean |offset| m</th>"
        f"<th>|wheel rate| deg/s</th><th>torque RMSE N·m</th><th>km</th></tr>{rows}</table>"
        "<p>Autonomy = 1 − interventions·6 s / elapsed time (NVIDIA PilotNet paper). An "
        "intervention: the car left its lane by more than 1 m and was put back. The interval "
        "resamples roads (and never claims more than the exact Poisson bound on the count "
        "allows); a few minutes of roads cannot separate two good models. Torque RMSE: "
        "the model's steering-torque output against the torque the car had at each frame.</p>"
        f"{_paired_table(paired)}"
        "<details><summary>raw</summary><pre>"
        f"{html.escape(json.dumps(closed, indent=1))}</pre></details>"
    )
    return section


def _fmt_nm(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"
