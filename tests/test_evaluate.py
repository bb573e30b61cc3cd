"""Evaluation: metrics by hand, lag on a known shift, report in a real browser, overlay video."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import FrameSpec
from steertime.evaluate import metrics as M
from tests.conftest import make_run, small_train_config


def test_metrics_by_hand():
    p, t = np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 1.0, 4.0, 4.0])
    assert M.rmse(p, t) == pytest.approx(np.sqrt((0 + 1 + 1 + 1) / 4))
    assert M.mae(p, t) == pytest.approx(0.75)
    assert M.r2(p, t) == pytest.approx(1 - 3 / 9)
    assert M.r2(np.full(4, t.mean()), t) == pytest.approx(0.0)
    assert M.mean_abs_rate(np.array([0.0, 1.0, 3.0]), np.array([0.0, 0.5, 1.0])) == pytest.approx(
        3.0
    )
    b = M.error_by_magnitude(p, t, scale=4.0)
    assert b["straight"]["frames"] == 0 and b["sharp"]["frames"] == 2 and b["gentle"]["frames"] == 2
    assert b["sharp"]["rmse"] == pytest.approx(np.sqrt((1 + 1) / 2))


@pytest.mark.parametrize("shift", [-4, 0, 3, 7])
def test_lag_detects_a_known_shift(shift):
    rng = np.random.default_rng(0)
    x = np.convolve(rng.normal(size=600), np.hanning(15), mode="same")
    true = x[50:550]
    pred = x[50 - shift : 550 - shift]  # pred[t] = true[t - shift]
    assert M.best_lag(pred, true, max_lag=10) == shift


def test_block_bootstrap_is_wider_than_iid_and_covers():
    rng = np.random.default_rng(1)
    err = np.repeat(rng.normal(size=100), 20)  # strongly correlated in blocks of 20
    lo, hi = M.block_bootstrap_rmse(err, block=20)
    lo1, hi1 = M.block_bootstrap_rmse(err, block=1)
    assert lo <= M.rmse(err, 0 * err) <= hi
    assert hi - lo > 2 * (hi1 - lo1)
    d_lo, d_hi = M.block_bootstrap_diff(err, err * 0.5, block=20)
    assert d_lo > 0  # a is clearly worse than b


def test_block_bootstrap_needs_ten_blocks_and_counts_every_frame():
    rng = np.random.default_rng(3)
    err = rng.normal(size=199)
    assert all(np.isnan(M.block_bootstrap_rmse(err, block=20)))  # 9.95 blocks
    assert all(np.isnan(M.block_bootstrap_diff(err, err, block=20)))
    err = np.r_[rng.normal(size=200), 5 * np.ones(19)]  # a partial last block, all large
    lo, hi = M.block_bootstrap_rmse(err, block=20)
    assert lo <= M.rmse(err, 0 * err) <= hi  # the tail is resampled, not dropped
    assert hi > M.rmse(err[:200], 0 * err[:200]) * 1.5


def test_block_bootstrap_ratio_covers_and_keeps_blocks_inside_groups():
    rng = np.random.default_rng(2)
    b = np.repeat(rng.normal(size=200), 10)
    a = 0.8 * b + 0.1 * rng.normal(size=b.size)
    lo, hi = M.block_bootstrap_ratio(a, b, block=10)
    assert lo < M.rmse(a, 0 * a) / M.rmse(b, 0 * b) < hi < 1.0
    # a group with an error only in its first frames: blocks never mix groups, so a block
    # of group 1 cannot carry group 0's large errors
    groups = np.repeat([0, 1], 1000)
    big = np.where(np.arange(2000) < 5, 100.0, 1.0)
    lo_g, hi_g = M.block_bootstrap_ratio(big, np.ones(2000), block=10, groups=groups)
    assert lo_g >= 1.0 and np.isfinite(hi_g)
    assert M.block_bootstrap_ratio(a, a, block=10) == (1.0, 1.0)


def test_led_run_is_also_scored_against_its_trained_target():
    """A run trained with data.lead=2 that predicts the log 2 frames ahead perfectly scores 0
    against its target, while the same-frame score (the one runs are compared by) is not 0."""
    from steertime.evaluate import score
    from steertime.evaluate.run import Frames, led_within_drives
    from steertime.models import OutputLayout

    t = np.arange(60) / 10.0
    drive = np.array(["a"] * 30 + ["b"] * 30)
    true = np.sin(t * 2.0)
    ahead = led_within_drives(true, drive, 2)
    # within each drive, 2 frames later; a drive's last frames repeat its last value
    assert ahead[0] == true[2] and ahead[27] == true[29] and ahead[28] == ahead[29] == true[29]
    assert ahead[30] == true[32] and ahead[59] == true[59]
    frames = Frames(t=t, drive=drive, truth={"steering": true}, units={}, rate_hz=10.0)
    frames.preds = {"led": {"steering": ahead}, "plain": {"steering": true.copy()}}
    frames.leads = {"led": 2, "plain": 0}
    frames.truth_led = {2: {"steering": ahead}}
    result = score(frames, OutputLayout(["steering"], [0.0], [1.0]))
    models = result["outputs"]["steering"]["models"]
    assert models["led"]["lead_frames"] == 2
    assert models["led"]["rmse_vs_trained_target"] == pytest.approx(0.0)
    assert models["led"]["rmse"] > 0.1
    assert "lead_frames" not in models["plain"] and models["plain"]["rmse"] == 0.0


@pytest.fixture(scope="module")
def evaluated(tiny_cache, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    from steertime.train import train

    cfg = small_train_config(
        tiny_cache,
        tmp / "lstm",
        "train.epochs=2",
        "data.outputs=steering,speed",
        "data.lead=1",
    )
    run = train(cfg, progress=False)
    other = make_run(tmp, "pilotnet")
    # make_run's layout is steering+speed with its own stats: fine for comparing on frames
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(run),
            "--data",
            str(tiny_cache),
            "--out",
            str(tmp / "ev"),
            "--compare",
            str(other),
        ],
    )
    assert r.exit_code == 0, r.output
    return tmp, r.output


def test_evaluate_writes_metrics_and_report(evaluated):
    tmp, output = evaluated
    m = json.loads((tmp / "ev" / "metrics.json").read_text())
    st = m["outputs"]["steering"]["models"]
    assert {"lstm", "run_pilotnet", "predict_zero", "predict_mean"} <= set(st)
    assert m["frames"] == 50  # test block of the 400-frame clip: [350, 400) after the guard
    for s in st.values():
        # 50 frames are under 10 bootstrap blocks of 2 s: no interval, and no claim
        assert s["rmse_ci95"] == [None, None]  # NaN in memory, null in the JSON
        assert "rmse_rad" in s and s["rmse_rad"] == pytest.approx(s["rmse"] * np.radians(25))
    assert "predict_zero" in output and "report:" in output
    assert "too few frames" in output and "no paired interval" in output
    assert "a real difference" not in output
    # the led run is also scored against what it was taught; the others are not led
    assert st["lstm"]["lead_frames"] == 1 and st["lstm"]["rmse_vs_trained_target"] > 0
    assert "lead_frames" not in st["run_pilotnet"]
    assert "lstm trained on the log 1 frames later" in output
    assert "class='led'" in (tmp / "ev" / "report.html").read_text()
    for f in ("report.html", "timeseries_steering.png", "scatter_speed.png", "training_curves.png"):
        assert (tmp / "ev" / f).is_file(), f
    # what each run cost to train, beside its error: a run without a log says nothing
    cost = m["training"]["lstm"]
    assert cost["epochs"] == 2 and cost["kept"] in ("epoch 1", "epoch 2", "soup")
    assert 0 < cost["kept_at_s"] <= cost["trained_s"] and "run_pilotnet" not in m["training"]
    assert (
        "lstm: kept" in output
        and "kept model on disk after" in (tmp / "ev" / "report.html").read_text()
    )


def test_runs_of_one_name_are_told_apart_and_one_run_twice_refused(tiny_cache, tmp_path):
    from steertime.errors import SteertimeError
    from steertime.evaluate import evaluate

    a = make_run(tmp_path / "a", "pilotnet")
    b = make_run(tmp_path / "b", "cnn_lstm").rename(tmp_path / "b" / "run_pilotnet")
    result, _, _ = evaluate(a, tiny_cache, "test", [b], threads=1)
    models = result["outputs"]["steering"]["models"]
    assert {"a/run_pilotnet", "b/run_pilotnet"} <= set(models)
    assert models["a/run_pilotnet"]["rmse"] != models["b/run_pilotnet"]["rmse"]
    with pytest.raises(SteertimeError, match="given twice"):
        evaluate(a, tiny_cache, "test", [tmp_path / "a" / ".." / "a" / "run_pilotnet"])


def test_training_cost_of_old_runs_and_ensembles(evaluated, tmp_path):
    import pandas as pd

    from steertime.evaluate.cost import training_cost
    from steertime.models.ensemble import build_ensemble

    tmp, _ = evaluated
    new = training_cost(tmp / "lstm")
    twin = shutil.copytree(tmp / "lstm", tmp_path / "twin")
    ens = build_ensemble([tmp / "lstm", twin], tmp_path / "ens")
    both = training_cost(ens)
    assert both["members"] == 2 and both["trained_s"] == pytest.approx(2 * new["trained_s"])
    # a run logged before elapsed_s existed: its epochs, no seconds guessed
    m = pd.read_csv(twin / "metrics.csv").drop(columns="elapsed_s")
    m.to_csv(twin / "metrics.csv", index=False)
    old = training_cost(twin)
    assert old["epochs"] == 2 and "trained_s" not in old
    assert "trained_s" not in training_cost(ens)  # a sum with a member unknown would undercount
    assert training_cost(tmp_path / "nothing") is None
    # a log a crash damaged: the good rows count, the rest is dropped, nothing raises
    rows = (tmp / "lstm" / "metrics.csv").read_bytes().splitlines(keepends=True)
    (twin / "metrics.csv").write_bytes(b"".join([rows[0], rows[1], b"\x00" * 40 + b"\n"]))
    (twin / "soup.json").write_bytes(b'{"elapsed_s": 1')
    cut = training_cost(twin)
    assert cut["epochs"] == 1 and cut["trained_s"] == pytest.approx(
        pd.read_csv(tmp / "lstm" / "metrics.csv")["elapsed_s"].iloc[0]
    )


def test_trained_target_score_matches_training_validation(evaluated, tiny_cache):
    """On the validation split, evaluate's score against the led target is the number
    training's validation computes (same targets, read past a segment's end as training
    does)."""
    import torch

    from steertime.data import Cache
    from steertime.evaluate import evaluate
    from steertime.models import OutputLayout
    from steertime.models.checkpoint import load_model
    from steertime.train.validate import stream_metrics

    tmp, _ = evaluated
    result, _, _ = evaluate(tmp / "lstm", tiny_cache, split="val")
    model, meta = load_model(tmp / "lstm")
    cache = Cache.open(tiny_cache)
    layout = OutputLayout.from_dict(meta["layout"])
    want = stream_metrics(model, cache, cache.segments("val"), layout, torch.device("cpu"), lead=1)
    got = result["outputs"]["steering"]["models"]["lstm"]
    assert got["rmse_vs_trained_target"] == pytest.approx(want["rmse_steering"], rel=1e-5)
    assert got["rmse"] != pytest.approx(got["rmse_vs_trained_target"], rel=1e-3)


def test_report_loads_in_headless_chromium(evaluated):
    tmp, _ = evaluated
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    r = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chrome'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            (tmp / "ev" / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'id="metrics-steering"' in dom and "predict_zero" in dom
    assert "data:image/png;base64," in dom
    assert "Uncaught" not in r.stderr and "SyntaxError" not in r.stderr


def test_render_overlay_decodes(tmp_path, shared_data):
    import av

    run = make_run(tmp_path, "cnn_lstm", source_size=(180, 320), spec=FrameSpec(66, 200, 70, 20))
    src = tmp_path / "clip"
    src.mkdir()
    # a 40-frame DeepTesla clip: the first 40 label rows beside the real video
    lines = (shared_data / "deeptesla" / "epoch01_steering.csv").read_text().splitlines()[:41]
    (src / "epoch01_steering.csv").write_text("\n".join(lines) + "\n")
    (src / "epoch01_front.mkv").symlink_to(shared_data / "deeptesla" / "epoch01_front.mkv")
    r = CliRunner().invoke(app, ["render", str(run), str(src), "--out", str(tmp_path / "o.mp4")])
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "o.mp4")) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        assert (n, s.codec_context.name, s.width) == (40, "h264", 640)
        assert s.height == 360 + 110
    assert not list(tmp_path.glob(".o.mp4*"))


def _result(run_rmse: float, mean_rmse: float, r2: float, ci_mean: list[float]) -> dict:
    def s(rmse, r2_=0.0):
        return {"rmse": rmse, "r2": r2_}

    entry = {
        "unit": {"name": "deg"},
        "models": {
            "lstm": s(run_rmse, r2),
            "predict_zero": s(1.0),
            "predict_mean": s(mean_rmse),
        },
        "diff_ci95_vs_primary": {"predict_zero": [0.1, 0.2], "predict_mean": ci_mean},
    }
    return {"primary": "lstm", "outputs": {"steering": entry}}


def test_verdict_says_when_a_model_does_not_beat_predict_mean():
    from steertime.evaluate.verdict import verdicts

    (good,) = verdicts(_result(0.5, 0.8, 0.6, [0.2, 0.4]))
    assert good.ok and "lstm is best" in good.text and "a real difference" in good.text
    # issue 24: a PilotNet on a real tub, test RMSE 0.0501 against predict-mean's 0.0506
    (bad,) = verdicts(_result(0.0501, 0.0506, 0.02, [-0.001, 0.002]))
    assert not bad.ok and "does NOT beat predict-the-mean" in bad.text and "R² 0.02" in bad.text
    assert "predict-zero" not in good.text + bad.text  # both beat predict-zero's 1.0
    # a short straight test stretch: answering 0 wins, so the verdict is not "good"
    (straight,) = verdicts(_result(1.2, 1.5, 0.6, [0.2, 0.4]))
    assert not straight.ok and "does NOT beat predict-zero (1)" in straight.text


def test_render_marks_the_held_out_part_of_a_drive(tiny_cache, shared_data, tmp_path):
    from collections import deque

    from steertime.data import read_drives
    from steertime.evaluate.heldout import split_labels
    from steertime.evaluate.render import SPLIT_C, compose

    (d,) = read_drives(shared_data / "udacity_sim_track1")
    clip = d.slice(np.arange(400, 800), "clip")  # the drive tiny_cache was prepared from
    labels = split_labels(tiny_cache, clip)
    assert labels[0] == "train" and labels[-1] == "test" and "val" in set(labels)
    assert "" in set(labels)  # the guard frames between splits are neither
    assert split_labels(tiny_cache, d.slice(np.arange(10), "other")) is None
    frame = np.zeros((160, 320, 3), np.uint8)
    img = compose(frame, 0.0, {}, {}, {}, deque(), "steering", "test")
    assert tuple(img[10, 640 - 12]) == SPLIT_C["test"]


def test_render_draws_the_spread_of_a_spread_run():
    """The overlay shows a spread run's 90% interval: an arc on the model's wheel and a
    band in the strip chart, wider for a wider spread; none without a spread."""
    from collections import deque

    from steertime.evaluate.render import BAND_C, compose

    frame = np.zeros((160, 320, 3), np.uint8)

    def draw(sd: float | None) -> np.ndarray:
        hist: deque = deque()
        img = None
        for i in range(20):
            pred = {"steering": 0.1} | ({"steering_std": sd} if sd is not None else {})
            img = compose(frame, i * 0.1, {"steering": 0.0}, pred, {}, hist, "steering")
        return img

    band = [int(np.all(draw(sd) == BAND_C, axis=-1).sum()) for sd in (None, 0.05, 0.2)]
    assert band[0] == 0 < band[1] < band[2]


def test_sim_video_shows_the_spread_and_the_takeover_request():
    from steertime.sim.video import compose
    from steertime.sim.world import World

    world = World(0)
    frame = world.frame()
    calm = compose(world, frame, {"steering": 1.0, "steering_std": 2.0}, 0, asking=False)
    ask = compose(world, frame, {"steering": 1.0, "steering_std": 2.0}, 0, asking=True)
    banner = np.all(ask[8:30, 8:150] == (200, 30, 30), axis=-1).mean()
    assert banner > 0.5 and not np.all(calm[8:30, 8:150] == (200, 30, 30), axis=-1).any()


def test_report_gives_its_verdict_and_no_nan_rows(evaluated):
    """Issue 24: the verdict first (best per output, paired interval); no |truth| table for
    speed (every frame would be 'sharp', the other rows NaN); no '+nan' lag."""
    import re

    tmp, output = evaluated
    page = (tmp / "ev" / "report.html").read_text()
    body = page.split("<h2>Run configuration</h2>")[0]  # metrics.json may hold nulls
    assert body.index("id='verdict'") < body.index('id="metrics-steering"')
    assert "steering: " in body and "is best" in body and "paired 95% CI" in body
    assert "paired 95% CI)</th>" in body  # the paired difference column
    speed = body.split('id="metrics-speed"')[1]
    assert "by |truth|" not in speed
    assert not re.search(r">\s*[+-]?nan\s*<", body, re.I)
    assert "+nan" not in output and "is best" in output
    m = json.loads((tmp / "ev" / "metrics.json").read_text())
    assert m["outputs"]["steering"]["models"]["predict_mean"]["lag_s"] is None


def test_timeseries_titles_name_drive_and_frames():
    from steertime.evaluate.plots import segment_title

    t = np.arange(160) / 10
    assert segment_title("sim_seed0#1[1040:1200]", t) == (
        "drive sim_seed0#1, frames 1040–1200 (15.9 s)"
    )


def test_a_dropout_model_is_evaluated_without_its_dropout(tiny_cache, tmp_path):
    """`evaluate` once streamed models in train mode: with dropout its figures were noisy
    and worse than validation's. Now it scores what validation scored, every time."""
    import pandas as pd

    from steertime.evaluate import evaluate
    from steertime.train import train
    from tests.conftest import small_train_config

    cfg = small_train_config(
        tiny_cache, tmp_path / "drop", "train.threads=1", "train.soup=0", "model.dropout=0.5"
    )
    run = train(cfg, progress=False)
    val = pd.read_csv(run / "metrics.csv")["val_rmse_steering"].min()
    scores = [
        evaluate(run, tiny_cache, split="val", threads=1)[0]["outputs"]["steering"]["models"][
            "drop"
        ]["rmse"]
        for _ in range(2)
    ]
    assert scores[0] == scores[1] == pytest.approx(val, rel=1e-5)


def test_bootstrap_blocks_never_join_two_drives():
    # drive a: 25 frames, drive b: 215; blocks of 20 restart at b's first frame
    groups = np.array(["a"] * 25 + ["b"] * 215)
    sums, lens = M._block_sums(np.ones(240), 20, groups)
    assert lens.tolist() == [20, 5] + [20] * 10 + [15] and sums.sum() == 240
    err = np.r_[np.zeros(25), np.ones(215)]
    lo, hi = M.block_bootstrap_rmse(err, 20, groups=groups)
    assert lo <= M.rmse(err, 0 * err) <= hi
