"""`steertime ensemble` and output clipping: averages in physical units, streams and exports
like any run, refuses members that see frames differently; outputs stay in the training
range."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import FrameSpec, read_drives
from steertime.data.cache import Cache
from steertime.errors import SteertimeError
from steertime.models import OutputLayout
from steertime.models.checkpoint import read_run_meta, save_untrained_run
from steertime.models.ensemble import build_ensemble
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.train.targets import fit_layout
from tests.conftest import LAYOUT, SPEC, make_run


@pytest.fixture(scope="module")
def frames(shared_data) -> list[np.ndarray]:
    (d,) = read_drives(shared_data / "udacity_sim_track1")
    return [f for _, f in d.frames.subset(np.arange(2000, 2006)).iter_frames()]


def _run(tmp_path, name: str, layout: OutputLayout, seed: int, spec=SPEC):
    folder = tmp_path / f"{name}_{seed}"
    return save_untrained_run(folder, name, layout, spec.to_dict(), (160, 320), seed=seed)


def test_ensemble_is_the_mean_of_its_members_in_physical_units(tmp_path, frames):
    # Members trained on different data: other normalisation of the same outputs.
    other = dataclasses.replace(LAYOUT, mean=[-0.2, 4.0], std=[0.7, 5.0])
    runs = [_run(tmp_path, "cnn_lstm", LAYOUT, 1), _run(tmp_path, "pilotnet", other, 2)]
    runs.append(_run(tmp_path, "cnn_lstm_ar", LAYOUT, 3))  # feeds back its own outputs
    ens = build_ensemble(runs, tmp_path / "ens")
    members = [Predictor.from_run(r) for r in runs]
    p = Predictor.from_run(ens)
    for i, f in enumerate(frames):
        got = p.step(f, 0.1 * i)
        each = [m.step(f, 0.1 * i) for m in members]
        for k in ("steering", "speed", "steering_rad"):
            assert got[k] == pytest.approx(np.mean([e[k] for e in each]), abs=1e-4), (i, k)
    assert [m["model"] for m in read_run_meta(ens)["members"]] == [
        "cnn_lstm",
        "pilotnet",
        "cnn_lstm_ar",
    ]


def test_ensemble_exports_to_onnx_with_the_same_outputs(tmp_path, frames):
    runs = [_run(tmp_path, "cnn_gru", LAYOUT, 1), _run(tmp_path, "cnn_lstm", LAYOUT, 2)]
    ens = build_ensemble(runs, tmp_path / "ens")
    folder = export_onnx(ens, tmp_path / "onnx")
    a, b = Predictor.from_run(ens), OnnxPredictor(folder)
    for i, f in enumerate(frames):
        x, y = a.step(f, 0.1 * i), b.step(f, 0.1 * i)
        assert abs(x["steering"] - y["steering"]) < 1e-4


def test_ensemble_refuses_members_that_differ(tmp_path):
    a = _run(tmp_path, "pilotnet", LAYOUT, 1)
    other_crop = _run(tmp_path, "pilotnet", LAYOUT, 2, FrameSpec(66, 200, crop_top=40))
    with pytest.raises(SteertimeError, match="same frames"):
        build_ensemble([a, other_crop], tmp_path / "e1")
    fewer = OutputLayout(["steering"], [0.0], [1.0])
    with pytest.raises(SteertimeError, match=r"predicts \['steering'\]"):
        build_ensemble([a, _run(tmp_path, "pilotnet", fewer, 3)], tmp_path / "e2")
    with pytest.raises(SteertimeError, match="at least two"):
        build_ensemble([a], tmp_path / "e3")
    build_ensemble([a, a], tmp_path / "e4")
    with pytest.raises(SteertimeError, match="already holds a run"):
        build_ensemble([a, a], tmp_path / "e4")


def test_ensemble_cli(tmp_path):
    runs = [str(make_run(tmp_path / str(i), "pilotnet")) for i in range(2)]
    res = CliRunner().invoke(app, ["ensemble", *runs, "--out", str(tmp_path / "ens")])
    assert res.exit_code == 0, res.output
    assert "2 members" in res.output
    res = CliRunner().invoke(app, ["ensemble", runs[0], "--out", str(tmp_path / "e2")])
    assert isinstance(res.exception, SteertimeError) and "at least two" in str(res.exception)


def test_layout_clips_physical_outputs_numpy_and_torch():
    lay = OutputLayout(["steering"], [0.0], [1.0], low=[-1.0], high=[0.5])
    assert lay.denormalize(np.array([[-3.0], [0.2], [2.0]]))[:, 0].tolist() == [-1.0, 0.2, 0.5]
    t = lay.denormalize(torch.tensor([[-3.0], [0.2], [2.0]]))
    assert torch.allclose(t[:, 0], torch.tensor([-1.0, 0.2, 0.5]))
    free = OutputLayout(["steering"], [0.0], [1.0])
    assert free.denormalize(np.array([5.0])).tolist() == [5.0]
    with pytest.raises(ValueError, match="not ordered"):
        OutputLayout(["steering"], [0.0], [1.0], low=[1.0], high=[0.0])


def test_clipped_run_streams_and_exports_inside_its_range(tmp_path, frames):
    # A range so narrow that an untrained model's outputs land outside it.
    lay = dataclasses.replace(LAYOUT, low=[0.04, 9.9], high=[0.06, 10.1])
    run = _run(tmp_path, "cnn_lstm", lay, 0)
    folder = export_onnx(run, tmp_path / "onnx")
    a, b = Predictor.from_run(run), OnnxPredictor(folder)
    for i, f in enumerate(frames):
        x, y = a.step(f, 0.1 * i), b.step(f, 0.1 * i)
        assert 0.04 <= x["steering"] <= 0.06 and 9.9 <= x["speed"] <= 10.1
        assert abs(x["steering"] - y["steering"]) < 1e-5 and abs(x["speed"] - y["speed"]) < 1e-4


def test_fit_layout_records_the_training_range(tiny_cache):
    cache = Cache.open(tiny_cache)
    lay = fit_layout(cache, ["steering", "speed"], [])
    train = np.concatenate(
        [
            cache.drives[s.drive].signals["steering"][s.start : s.stop]
            for s in cache.segments("train")
        ]
    )
    assert lay.low[0] == pytest.approx(train.min()) and lay.high[0] == pytest.approx(train.max())
    assert fit_layout(cache, ["steering"], [], clip=False).low == []


def test_weighted_ensemble_is_the_weighted_mean(tmp_path, frames):
    other = dataclasses.replace(LAYOUT, mean=[-0.2, 4.0], std=[0.7, 5.0])
    runs = [_run(tmp_path, "cnn_lstm", LAYOUT, 1), _run(tmp_path, "pilotnet", other, 2)]
    ens = build_ensemble(runs, tmp_path / "ens", weights=[3, 1])
    members = [Predictor.from_run(r) for r in runs]
    p = Predictor.from_run(ens)
    for i, f in enumerate(frames[:3]):
        got, each = p.step(f, 0.1 * i), [m.step(f, 0.1 * i) for m in members]
        want = 0.75 * each[0]["steering"] + 0.25 * each[1]["steering"]
        assert got["steering"] == pytest.approx(want, abs=1e-4)
    assert [m["weight"] for m in read_run_meta(ens)["members"]] == [3.0, 1.0]
    for bad, match in (([1], "1 weights for 2 runs"), ([1, -1], "must be >= 0")):
        with pytest.raises(SteertimeError, match=match):
            build_ensemble(runs, tmp_path / "bad", weights=bad)
    res = CliRunner().invoke(
        app, ["ensemble", *map(str, runs), "--out", str(tmp_path / "e"), "--weights", "2,x"]
    )
    assert res.exit_code != 0 and "--weights" in res.output
    res = CliRunner().invoke(
        app, ["ensemble", *map(str, runs), "--out", str(tmp_path / "e"), "--weights", "2,1"]
    )
    assert res.exit_code == 0 and "weight 2" in res.output, res.output


def _spread_run(tmp_path, layout: OutputLayout, seed: int) -> object:
    return save_untrained_run(
        tmp_path / f"spread_{seed}",
        "cnn_lstm",
        layout,
        SPEC.to_dict(),
        (160, 320),
        seed=seed,
        missing_input=True,
    )


def test_ensemble_of_spread_runs_mixes_their_gaussians_and_steps_without_frames(tmp_path, frames):
    lay = dataclasses.replace(LAYOUT, spread=True, spread_scale=[1.5, 0.5])
    other = dataclasses.replace(
        LAYOUT, mean=[-0.2, 4.0], std=[0.7, 5.0], spread=True, spread_scale=[0.8, 2.0]
    )
    runs = [_spread_run(tmp_path, lay, 1), _spread_run(tmp_path, other, 2)]
    ens = build_ensemble(runs, tmp_path / "ens")
    p, members = Predictor.from_run(ens), [Predictor.from_run(r) for r in runs]
    assert p.missing_input  # every member reads the flag, so the ensemble does
    onnx = OnnxPredictor(export_onnx(ens, tmp_path / "onnx"))
    steps = [*frames[:3], None, None, *frames[3:]]  # two frames that never arrive
    for i, f in enumerate(steps):
        got, exported = p.step(f, 0.1 * i), onnx.step(f, 0.1 * i)
        each = [m.step(f, 0.1 * i) for m in members]
        assert got["status"] == ("missing" if f is None else "ok")
        for k in ("steering", "speed"):
            mu = np.mean([e[k] for e in each])
            var = np.mean([e[f"{k}_std"] ** 2 + e[k] ** 2 for e in each]) - mu**2
            assert got[k] == pytest.approx(mu, abs=1e-4), (i, k)
            assert got[f"{k}_std"] == pytest.approx(np.sqrt(var), rel=1e-3), (i, k)
            assert exported[f"{k}_std"] == pytest.approx(got[f"{k}_std"], rel=1e-3), (i, k)
    plain = _run(tmp_path, "cnn_lstm", LAYOUT, 3)
    with pytest.raises(SteertimeError, match="all predict one, or none"):
        build_ensemble([runs[0], plain], tmp_path / "mixed")


def test_train_seeds_averages_k_runs_resumes_each_and_refuses_a_second_start(tiny_cache, tmp_path):
    from tests.conftest import SMALL_TRAIN

    out = tmp_path / "lstm"
    sets = [a for o in [*SMALL_TRAIN, "train.threads=1", "train.seed=3"] for a in ("--set", o)]
    cmd = ["train", "--data", str(tiny_cache), "--model", "cnn_lstm", "--out", str(out), *sets]
    r = CliRunner().invoke(app, [*cmd, "--seeds", "2"])
    assert r.exit_code == 0, r.output
    members = read_run_meta(out)["members"]
    assert [m["run"] for m in members] == [
        str((out / "members" / f"seed{s}").resolve()) for s in (3, 4)
    ]
    assert [m["weight"] for m in members] == [1.0, 1.0]
    for s in (3, 4):  # each member is a run of its own, with its seed
        cfg = (out / "members" / f"seed{s}" / "config.yaml").read_text()
        assert f"seed: {s}" in cfg
    assert re.search(r"lstm: kept ensemble of 2; its members trained \d+ s summed", r.output)
    p = Predictor.from_run(out)  # the folder is a run like any other
    assert np.isfinite(p.step(np.zeros((160, 320, 3), np.uint8), 0.0)["steering"])

    again = CliRunner().invoke(app, [*cmd, "--seeds", "2"])
    assert "already holds a run" in str(again.exception)
    # resume with one more epoch: both members go on (their stored seeds), ensemble rebuilt
    more = ["train", "--out", str(out), "--resume", "--epochs", "2", "--seeds", "2"]
    r = CliRunner().invoke(app, more)
    assert r.exit_code == 0, r.output
    for s in (3, 4):
        rows = (out / "members" / f"seed{s}" / "metrics.csv").read_text().strip().splitlines()
        assert len(rows) == 3  # header + 2 epochs
    plain = CliRunner().invoke(app, ["train", "--out", str(out), "--resume"])
    assert "holds 2 members (seed3, seed4); resume it with --seeds 2" in str(plain.exception)
    grown = CliRunner().invoke(app, [*more[:-1], "3"])  # a third seed joins the average
    assert grown.exit_code == 0, grown.output
    assert len(read_run_meta(out)["members"]) == 3
    bad = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--seeds", "2"])
    assert "seed5 are not among --seeds 2" in str(bad.exception)
    bad = CliRunner().invoke(app, [*cmd, "--seeds", "0"])
    assert "--seeds must be >= 1" in str(bad.exception)
    none = ["train", "--out", str(tmp_path / "none"), "--resume", "--seeds", "2"]
    assert "no member run to resume" in str(CliRunner().invoke(app, none).exception)


def test_alternate_changes_every_second_member_and_resume_keeps_it(tiny_cache, tmp_path):
    import yaml

    from tests.conftest import SMALL_TRAIN

    out = tmp_path / "mix"
    sets = [a for o in [*SMALL_TRAIN, "train.threads=1", "train.seed=3"] for a in ("--set", o)]
    cmd = ["train", "--data", str(tiny_cache), "--model", "cnn_lstm", "--out", str(out), *sets]
    alt = ["--alternate", "train.recon_weight=1", "--alternate", "train.recon_grid=6,8"]
    bad = CliRunner().invoke(app, [*cmd, "--seeds", "3", "--alternate", "train.nope=1"])
    assert "--alternate train.nope=1: unknown config key" in str(bad.exception)
    assert not (out / "members").exists()  # refused before any member trained
    lone = CliRunner().invoke(app, [*cmd, *alt])
    assert "--alternate changes every second member of --seeds K" in str(lone.exception)

    r = CliRunner().invoke(app, [*cmd, "--seeds", "3", *alt])
    assert r.exit_code == 0, r.output

    def recon(seed: int) -> tuple:
        t = yaml.safe_load((out / "members" / f"seed{seed}" / "config.yaml").read_text())["train"]
        return t["seed"], t["recon_weight"], t["recon_grid"]

    assert [recon(s) for s in (3, 4, 5)] == [
        (3, 0.0, [12, 16]),
        (4, 1.0, [6, 8]),
        (5, 0.0, [12, 16]),
    ]
    assert Predictor.from_run(out).model is not None  # the average of the three
    # resume goes on with the recipe it started with; another --alternate is refused
    more = ["train", "--out", str(out), "--resume", "--epochs", "2", "--seeds", "3"]
    other = CliRunner().invoke(app, [*more, "--alternate", "train.recon_weight=3"])
    assert "was started with --alternate train.recon_weight=1 train.recon_grid=6,8" in str(
        other.exception
    )
    r = CliRunner().invoke(app, [*more, *alt])
    assert r.exit_code == 0, r.output
    assert recon(4) == (4, 1.0, [6, 8])
    grown = CliRunner().invoke(app, [*more[:-1], "4"])  # the fourth member takes it too
    assert grown.exit_code == 0, grown.output
    assert recon(6) == (6, 1.0, [6, 8])


def test_train_seeds_side_by_side_gives_the_members_of_one_after_another(tiny_cache, tmp_path):
    """`--jobs 2` trains each member in its own process: the same weights as in turn."""
    from safetensors.torch import load_file

    from tests.conftest import SMALL_TRAIN

    sets = [a for o in [*SMALL_TRAIN, "train.threads=1"] for a in ("--set", o)]
    base = ["train", "--data", str(tiny_cache), "--model", "cnn_lstm", *sets, "--seeds", "2"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "turn")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "side"), "--jobs", "2"])
    assert r.exit_code == 0, r.output
    for s in (0, 1):
        weights = [
            load_file(
                tmp_path / how / "members" / f"seed{s}" / "checkpoints/best/model.safetensors"
            )
            for how in ("turn", "side")
        ]
        assert weights[0].keys() == weights[1].keys()
        for k in weights[0]:
            assert torch.equal(weights[0][k], weights[1][k]), (s, k)
    assert len(read_run_meta(tmp_path / "side")["members"]) == 2
    more = ["train", "--out", str(tmp_path / "side"), "--resume", "--epochs", "2", "--seeds", "2"]
    r = CliRunner().invoke(app, [*more, "--jobs", "2"])  # each member goes on in its process
    assert r.exit_code == 0, r.output
    for s in (0, 1):
        rows = (tmp_path / "side" / "members" / f"seed{s}" / "metrics.csv").read_text()
        assert len(rows.strip().splitlines()) == 3  # header + 2 epochs
    bad = CliRunner().invoke(app, [*base[:-2], "--out", str(tmp_path / "x"), "--jobs", "2"])
    assert "add --seeds" in str(bad.exception)
    # a member's failure in its own process reaches the user as the error it raised
    gone = str(tmp_path / "no_cache")
    bad = CliRunner().invoke(
        app, [*base, "--data", gone, "--out", str(tmp_path / "y"), "--jobs", "2"]
    )
    assert isinstance(bad.exception, SteertimeError) and gone in str(bad.exception)


def test_ctrl_c_stops_members_side_by_side_at_once_and_starts_no_queued_one(tiny_cache, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import SMALL_TRAIN

    out = tmp_path / "ens"
    sets = [a for o in [*SMALL_TRAIN, "train.threads=1"] for a in ("--set", o)]
    cmd = [sys.executable, "-m", "steertime", "train", "--data", str(tiny_cache)]
    cmd += ["--model", "cnn_lstm", *sets, "--epochs", "500", "--out", str(out)]
    p = subprocess.Popen(
        [*cmd, "--seeds", "3", "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C: SIGINT to the whole process group
    )
    try:
        first = out / "members" / "seed0" / "metrics.csv"
        deadline = time.monotonic() + 120
        while not first.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.is_file(), "the first member never finished an epoch"
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=30)  # not the 500 epochs of three members
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert rc != 0
    assert not (out / "members" / "seed2").exists()  # the queued member never started
    assert not (out / "checkpoints").exists()  # no average of unfinished members


def test_jobs_refused_where_it_cannot_work(tiny_cache, tmp_path, monkeypatch):
    from steertime.train import TrainConfig, apply_overrides
    from steertime.train.members import train_members

    cfg = apply_overrides(TrainConfig(), [f"data.cache={tiny_cache}"])
    cfg.out = str(tmp_path / "r")
    with pytest.raises(SteertimeError, match="--jobs must be >= 1, got 0"):
        train_members(cfg, 2, jobs=0)
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun the processes share each member
    with pytest.raises(SteertimeError, match="under torchrun .* drop --jobs"):
        train_members(cfg, 2, jobs=2)
    assert not (tmp_path / "r").exists()  # refused before anything was written
