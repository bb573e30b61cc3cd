"""Training: TBPTT schedule, overfitting a real clip, resume after SIGKILL, DDP, NaN stop."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steertime.data.splits import Segment
from steertime.errors import SteertimeError
from steertime.models import create_model
from steertime.models.checkpoint import read_meta
from steertime.train import TrainConfig, TrainingDiverged, apply_overrides, load_config, train
from steertime.train.batches import Augment, stateful_schedule, window_schedule
from tests.conftest import small_train_config


def _cfg(cache, out, *overrides) -> TrainConfig:
    return small_train_config(cache, out, "train.threads=1", *overrides)


def test_stateful_lanes_walk_consecutive_chunks():
    segs = [Segment(0, "train", 0, 103), Segment(1, "train", 10, 57), Segment(2, "train", 0, 80)]
    steps = stateful_schedule(segs, seq_len=10, lanes=3, seed=1, epoch=2)
    assert steps == stateful_schedule(segs, 10, 3, 1, 2)  # deterministic
    for b in range(3):
        lane = [row[b] for row in steps]
        assert lane[0].reset
        for prev, cur in zip(lane, lane[1:], strict=False):
            if not cur.reset:  # continuing: same drive, the very next chunk
                assert cur.drive == prev.drive and cur.start == prev.start + 10
            else:
                assert cur.drive != prev.drive or cur.start != prev.start + 10
    for row in steps:
        for c in row:
            seg = next(s for s in segs if s.drive == c.drive)
            assert seg.start <= c.start and c.start + 10 <= seg.stop
    with pytest.raises(SteertimeError, match="lower train.batch_size"):
        stateful_schedule(segs, 10, 100, 0, 0)


def test_windows_fit_inside_segments():
    segs = [Segment(0, "train", 0, 100)]
    steps = window_schedule(segs, length=20, stride=10, batch=2, seed=0, epoch=0)
    assert all(c.reset and c.start + 20 <= 100 for row in steps for c in row)


def test_augmentation_is_drawn_per_state_run_and_off_by_default():
    segs = [Segment(0, "train", 0, 203), Segment(1, "train", 0, 150)]
    plain = stateful_schedule(segs, 10, 4, seed=3, epoch=1)
    assert all(not c.flip and c.gain == 1.0 for row in plain for c in row)
    aug = Augment(flip=True, brightness=0.3)
    steps = stateful_schedule(segs, 10, 4, seed=3, epoch=1, augment=aug)
    assert steps == stateful_schedule(segs, 10, 4, seed=3, epoch=1, augment=aug)
    assert [(c.drive, c.start) for r in steps for c in r] == [
        (c.drive, c.start) for r in plain for c in r
    ]
    for b in range(4):
        lane = [row[b] for row in steps]
        for prev, cur in zip(lane, lane[1:], strict=False):
            if not cur.reset:  # the state carries over: so must the mirror and the light
                assert (cur.flip, cur.gain) == (prev.flip, prev.gain)
    flat = [c for r in steps for c in r]
    assert {c.flip for c in flat} == {True, False}
    assert all(0.7 <= c.gain <= 1.3 for c in flat)


def test_flipped_chunk_mirrors_frames_and_negates_steering_only(tiny_cache):
    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    reader = BatchReader(cache, ["steering", "speed"], 5, 2)
    frames, target, _ = reader.read([Chunk(0, 20, True), Chunk(0, 20, True, flip=True, gain=0.5)])
    plain = frames[0].astype(int)
    assert (frames[1].astype(int) == (plain[:, :, ::-1] * 0.5).astype(int)).all()
    assert (target[1, :, 0] == -target[0, :, 0]).all()  # steering mirrored
    assert (target[1, :, 1] == target[0, :, 1]).all()  # speed is not


def test_shift_moves_every_frame_of_a_sequence_by_one_offset(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import Augment, BatchReader, Chunk, shifted

    x = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1)
    down_right = shifted(x, 1, 2)[..., 0]
    assert (down_right[:, 1:, 2:] == x[:, :-1, :-2, 0]).all()  # content moved by (1, 2)
    assert (down_right[:, 0, 2:] == x[:, 0, :-2, 0]).all()  # uncovered top row: edge repeated
    assert (down_right[:, :, 0] == down_right[:, :, 2]).all()
    assert (shifted(x, -1, 0)[:, :2] == x[:, 1:]).all()
    assert (shifted(x, 0, 0) == x).all()

    cache = Cache.open(tiny_cache)
    reader = BatchReader(cache, ["steering"], 5, 2)
    frames, target, _ = reader.read([Chunk(0, 20, True), Chunk(0, 20, True, dy=-2, dx=3)])
    assert (frames[1] == shifted(frames[0].copy(), -2, 3)).all()
    assert (target[1] == target[0]).all()  # the label is untouched
    # drawn once per run of chunks, within ±shift; a run without shift draws as before
    rng = np.random.default_rng(0)
    draws = [Augment(shift=3).draw(rng) for _ in range(200)]
    assert {d["dy"] for d in draws} == set(range(-3, 4)) == {d["dx"] for d in draws}
    assert Augment(flip=True).draw(np.random.default_rng(0)) == Augment(flip=True, shift=0).draw(
        np.random.default_rng(0)
    )


def test_shift_steer_corrects_the_steering_of_a_yawed_view_within_the_lock(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    steer = cache.drives[0].signals["steering"]
    lock = max(abs(float(steer.min())), abs(float(steer.max())))
    reader = BatchReader(cache, ["steering", "speed"], 5, 4, aux_leads=(1,), shift_steer=0.01)
    chunks = [Chunk(0, 20, True), Chunk(0, 20, True, dx=3, dy=2), Chunk(0, 20, True, dy=-2)]
    chunks.append(Chunk(0, 20, True, dx=-3, flip=True))
    _, target, _ = reader.read(chunks)
    plain = target[0].copy()
    assert np.allclose(target[1, :, 0], np.clip(plain[:, 0] + 0.03, -lock, lock))
    assert (target[1, :, 1] == plain[:, 1]).all()  # speed does not care where the car points
    assert (target[2] == plain).all()  # a vertical shift is a pitch: no correction
    # mirrored first, then yawed left: the negated label moves by -0.03
    assert np.allclose(target[3, :, 0], np.clip(-plain[:, 0] - 0.03, -lock, lock))
    assert np.allclose(reader.aux_targets[1, :, 0, 0], reader.aux_targets[0, :, 0, 0] + 0.03)
    # a correction past the lock stops at it
    big = BatchReader(cache, ["steering"], 5, 1, shift_steer=0.5)
    _, clipped, _ = big.read([Chunk(0, 20, True, dx=30)])
    assert np.allclose(clipped[0, :, 0], lock)


def test_strides_play_each_segment_at_one_drawn_frame_step():
    segs = [Segment(d, "train", 0, n) for d, n in enumerate([203, 150, 171, 96, 260, 120])]
    plain = stateful_schedule(segs, 10, 2, seed=3, epoch=1)
    assert plain == stateful_schedule(segs, 10, 2, seed=3, epoch=1, augment=Augment(strides=(1,)))
    aug = Augment(strides=(1, 2))
    steps = stateful_schedule(segs, 10, 2, seed=3, epoch=1, augment=aug)
    assert steps == stateful_schedule(segs, 10, 2, seed=3, epoch=1, augment=aug)
    flat = [c for r in steps for c in r]
    assert {c.stride for c in flat} == {1, 2}
    for seg in segs:  # one step per segment and epoch; every row inside the segment
        mine = [c for c in flat if c.drive == seg.drive]
        assert len({c.stride for c in mine}) <= 1
        assert all(seg.start <= c.start and c.start + 9 * c.stride < seg.stop for c in mine)
    for b in range(2):
        lane = [row[b] for row in steps]
        for prev, cur in zip(lane, lane[1:], strict=False):
            if not cur.reset:  # the state carries on from the chunk just before in the log
                assert cur.drive == prev.drive and cur.start == prev.start + 10 * prev.stride
    short = [Segment(0, "train", 0, 15), Segment(1, "train", 0, 12)]  # no room for step 2
    for epoch in range(4):
        sparse = stateful_schedule(short, 10, 2, seed=0, epoch=epoch, augment=Augment(strides=(2,)))
        assert all(c.stride == 1 for r in sparse for c in r)
    wins = window_schedule(segs, length=20, stride=10, batch=2, seed=0, epoch=0, augment=aug)
    assert {c.stride for r in wins for c in r} == {1, 2}
    assert all(
        c.start + 19 * c.stride < segs[c.drive].stop for r in wins for c in r
    )  # a window's last row is inside its segment


def test_a_strided_chunk_reads_every_kth_frame_and_its_label(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    d = cache.drives[0]
    reader = BatchReader(cache, ["steering"], 5, 2, lead=1, aux_leads=(2,))
    frames, target, _ = reader.read([Chunk(0, 20, True), Chunk(0, 20, True, stride=3)])
    rows = np.arange(20, 33, 3)
    assert (frames[1] == d.read_frames(20, 33)[::3]).all()
    steering = np.asarray(d.signals["steering"], np.float32)  # the targets' dtype
    assert (target[1, :, 0] == steering[rows + 1]).all()  # the lead is in log rows
    assert (reader.aux_targets[1, :, 0, 0] == steering[rows + 3]).all()
    assert (target[0, :, 0] == steering[21:26]).all()  # stride 1 as before
    end = reader.read([Chunk(0, d.n - 13, True, stride=3)] * 2)[1]
    assert end[0, -1, 0] == steering[d.n - 1]  # the lead clamps at the drive's end


def test_patience_waits_until_the_model_leaves_predict_the_mean():
    from steertime.train.position import Position, loss_is_share, still_at_mean

    share = loss_is_share(TrainConfig().train, False)
    assert still_at_mean(share, 0.97) and not still_at_mean(share, 0.6)
    assert not still_at_mean(share, 40.0)  # blown up (SGD at too high a rate): spend it
    for other in ("train.spread=true", "train.bins=11", "train.aux_leads=5"):
        c = TrainConfig()
        apply_overrides(c, [other])
        # no known mean level: patience as ever
        assert not still_at_mean(loss_is_share(c.train, False), 1.3)
    # autoregressive: its loss sums three terms
    assert not still_at_mean(loss_is_share(TrainConfig().train, True), 1.3)

    pos = Position()  # the tub with 5-frame windows: ten epochs at the mean, then learning
    for epoch, (score, loss) in enumerate([(0.355, 1.0)] + [(0.36, 0.95)] * 8 + [(0.30, 0.7)]):
        pos.judge(score, epoch, still_at_mean(share, loss))
        assert pos.bad_epochs == 0  # nothing spent while at the mean
    assert (pos.best, pos.best_epoch) == (0.30, 9)
    pos.judge(0.31, 10, still_at_mean(share, 0.6))
    pos.judge(0.32, 11, still_at_mean(share, 0.6))
    assert pos.bad_epochs == 2  # learning: patience spent as before
    pos.judge(0.29, 12, False)
    assert (pos.bad_epochs, pos.best_epoch) == (0, 12)


def test_overrides_reject_unknown_keys_and_round_trip(tmp_path):
    with pytest.raises(SteertimeError, match="unknown config key optim.lrr"):
        apply_overrides(TrainConfig(), ["optim.lrr=1"])
    with pytest.raises(SteertimeError, match="unknown config key model.hiden"):
        apply_overrides(TrainConfig(), ["model.hiden=3"])
    with pytest.raises(SteertimeError, match="expected a int"):
        apply_overrides(TrainConfig(), ["train.seq_len=ten"])
    cfg = apply_overrides(
        TrainConfig(),
        ["optim.lr=3e-4", "data.outputs=steering,speed", "model.name=cnn_gru", "model.hidden=32"],
    )
    assert cfg.optim.lr == 3e-4 and cfg.data.outputs == ["steering", "speed"]
    assert cfg.model == {"name": "cnn_gru", "hidden": 32}
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(tmp_path / "c.yaml").to_dict() == cfg.to_dict()


def test_overfits_a_tiny_real_clip(tiny_cache, tmp_path):
    # Train on 60 real frames only, so the network can memorise them.
    small = tmp_path / "small"
    shutil.copytree(tiny_cache, small)
    mf = json.loads((small / "manifest.json").read_text())
    mf["splits"]["segments"] = [[0, "train", 0, 60], [0, "val", 100, 140]]
    (small / "manifest.json").write_text(json.dumps(mf))
    cfg = _cfg(
        small,
        tmp_path / "run",
        "optim.lr=2e-3",
        "train.epochs=150",
        "train.patience=1000",
        "optim.warmup_steps=5",
        "train.seq_len=10",
        "train.batch_size=2",
        "model.hidden=32",
    )
    run = train(cfg, progress=False)
    loss = [
        float(r["train_loss"])
        for r in csv.DictReader((run / "metrics.csv").read_text().splitlines())
    ]
    # Normalised MSE: 1.0 is predicting the mean. Adam on 3 steps an epoch has the odd
    # spike, so judge the last 20 epochs as a whole.
    tail = sorted(loss[-20:])
    assert loss[0] > 0.8 and tail[0] < 0.02 and tail[10] < 0.1, loss[-20:]


def _train_cmd(cfg_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "steertime", "train", "--config", str(cfg_file), *extra]


def _write_cfg(cfg: TrainConfig, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_resume_after_sigkill_matches_uninterrupted(tiny_cache, tmp_path, ema):
    common = [
        "train.epochs=2",
        "train.checkpoint_every=3",
        "train.patience=10",
        "model.name=cnn_lstm_ar",
        f"optim.ema={ema}",
    ]
    ref = train(_cfg(tiny_cache, tmp_path / "ref", *common), progress=False)

    cfg_file = _write_cfg(_cfg(tiny_cache, tmp_path / "killed", *common), tmp_path / "k.yaml")
    p = subprocess.Popen(_train_cmd(cfg_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / "killed" / "checkpoints" / "last" / "meta.json"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and p.poll() is None:
        if meta.is_file():
            pos = json.loads(meta.read_text())["position"]
            if pos["epoch"] == 0 and pos["step"] >= 3:
                p.send_signal(signal.SIGKILL)
                killed_at = pos
                break
        time.sleep(0.005)
    p.wait()
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    r = subprocess.run(
        [sys.executable, "-m", "steertime", "train", "--out", str(tmp_path / "killed"), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    for which in ("last", "best"):  # with optim.ema, best holds the averaged weights
        a = load_file(ref / "checkpoints" / which / "model.safetensors")
        b = load_file(tmp_path / "killed" / "checkpoints" / which / "model.safetensors")
        for k in a:
            assert torch.equal(a[k], b[k]), (which, k)
    epochs = [
        r["epoch"]
        for r in csv.DictReader((tmp_path / "killed" / "metrics.csv").read_text().splitlines())
    ]
    assert epochs == ["0", "1"]


def _torchrun_train(cfg_file: Path, *args: str) -> None:
    """`steertime train --config cfg_file ARGS` in two processes (gloo, one thread each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    cmd += ["2", "-m", "steertime", "train", "--config", str(cfg_file), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = (load_file(r / "checkpoints" / "last" / "model.safetensors") for r in (a, b))
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_ddp_two_processes_match_single(tiny_cache, tmp_path):
    common = ["train.epochs=1", "train.max_steps=6", "model.name=cnn_gru"]
    single = train(_cfg(tiny_cache, tmp_path / "single", *common), progress=False)
    _torchrun_train(_write_cfg(_cfg(tiny_cache, tmp_path / "ddp", *common), tmp_path / "d.yaml"))
    a = load_file(single / "checkpoints" / "last" / "model.safetensors")
    # The initial weights (same seed): training must have moved them far more than the
    # single-vs-DDP difference, or the comparison would prove nothing.
    meta = read_meta(single / "checkpoints" / "last")
    torch.manual_seed(0)
    init = create_model(meta["model"], **meta["model_config"]).state_dict()
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    differ = _max_diff(single, tmp_path / "ddp")
    assert moved > 1e-3 and differ < 2e-5, (moved, differ)


def test_seeds_under_torchrun_share_each_member_and_write_one_average(tiny_cache, tmp_path):
    from steertime.models.checkpoint import read_run_meta
    from steertime.train.members import train_members

    common = ["train.epochs=1", "train.max_steps=4", "model.name=cnn_gru"]
    single = train_members(_cfg(tiny_cache, tmp_path / "single", *common), 2)
    _torchrun_train(
        _write_cfg(_cfg(tiny_cache, tmp_path / "ddp", *common), tmp_path / "d.yaml"), "--seeds", "2"
    )
    assert len(read_run_meta(tmp_path / "ddp")["members"]) == 2
    for s in ("seed0", "seed1"):  # each member trained by both processes, as one run would be
        assert _max_diff(single / "members" / s, tmp_path / "ddp" / "members" / s) < 2e-5, s


def test_nan_loss_stops_with_advice(tiny_cache, tmp_path, monkeypatch):
    from steertime.models.cnn_rnn import CnnRnn

    real_core = CnnRnn.core
    calls = {"n": 0}

    def poisoned(self, feats, state, teacher=None):
        calls["n"] += 1
        y, s = real_core(self, feats, state, teacher)
        return (y * float("nan") if calls["n"] > 4 else y), s

    monkeypatch.setattr(CnnRnn, "core", poisoned)
    cfg = _cfg(tiny_cache, tmp_path / "nan", "train.checkpoint_every=2")
    with pytest.raises(TrainingDiverged, match=r"epoch 0 step 4 .*lower optim.lr.*clip_norm"):
        train(cfg, progress=False)
    w = load_file(tmp_path / "nan" / "checkpoints" / "last" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in w.values())


def test_outputs_must_exist(tiny_cache, tmp_path):
    cfg = _cfg(tiny_cache, tmp_path / "r", "data.outputs=steering,torque")
    with pytest.raises(SteertimeError, match=r"outputs \['torque'\] are not signals"):
        train(cfg, progress=False)


def test_training_with_augmentation_runs_and_records_it(tiny_cache, tmp_path):
    run = tmp_path / "aug"
    train(
        _cfg(
            tiny_cache,
            run,
            "data.flip=true",
            "data.brightness=0.2",
            "data.shift=4",
            "data.smooth=2",
            "data.strides=1,2",
            "data.faults=blob:0.5@1",
            "train.max_steps=3",
        )
    )
    cfg = load_config(run / "config.yaml")
    assert cfg.data.flip is True and cfg.data.brightness == 0.2
    assert cfg.data.shift == 4 and cfg.data.smooth == 2 and cfg.data.strides == [1, 2]


def test_bad_augmentation_settings_are_refused(tiny_cache, tmp_path):
    with pytest.raises(SteertimeError, match=r"data.brightness must be in \[0, 1\), got 1.5"):
        train(_cfg(tiny_cache, tmp_path / "a", "data.brightness=1.5"))
    with pytest.raises(SteertimeError, match="need frames, not a features store"):
        train(_cfg(tiny_cache, tmp_path / "b", "data.brightness=0.2", f"data.features={tmp_path}"))
    with pytest.raises(SteertimeError, match=r"data.shift must be in \[0, 32\] pixels, got -1"):
        train(_cfg(tiny_cache, tmp_path / "c", "data.shift=-1"))
    with pytest.raises(SteertimeError, match=r"data.shift_steer must be used with data.shift > 0"):
        train(_cfg(tiny_cache, tmp_path / "g", "data.shift_steer=0.01"))
    with pytest.raises(SteertimeError, match=r"data.shift_steer must be in \[-0.5, 0.5\]"):
        train(_cfg(tiny_cache, tmp_path / "h", "data.shift=2", "data.shift_steer=2"))
    with pytest.raises(SteertimeError, match="data.smooth must be >= 0 frames, got -2"):
        train(_cfg(tiny_cache, tmp_path / "e", "data.smooth=-2"))
    with pytest.raises(SteertimeError, match=r"data.strides must be frame steps in 1..16"):
        train(_cfg(tiny_cache, tmp_path / "f", "data.strides=1,0"))
    assert not any((tmp_path / n).exists() for n in "acefgh")  # refused before anything is written
    with pytest.raises(SteertimeError, match="need frames, not a features store"):
        train(_cfg(tiny_cache, tmp_path / "d", "data.shift=2", f"data.features={tmp_path}"))
    with pytest.raises(SteertimeError, match="data.blur / .* need frames, not a features store"):
        train(_cfg(tiny_cache, tmp_path / "i", "data.blur=3", f"data.features={tmp_path}"))
    with pytest.raises(SteertimeError, match=r"data.blur must be in \[0, 32\] pixels, got -1"):
        train(_cfg(tiny_cache, tmp_path / "j", "data.blur=-1"))
    assert not (tmp_path / "i").exists() and not (tmp_path / "j").exists()


def test_lead_reads_targets_ahead_and_clamps_at_the_drive_end(tiny_cache):
    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    d = cache.drives[0]
    steer = d.signals["steering"]
    reader = BatchReader(cache, ["steering"], 5, 2, lead=3)
    _, target, _ = reader.read([Chunk(0, 10, True), Chunk(0, d.n - 5, True)])
    assert (target[0, :, 0] == steer[13:18]).all()
    assert (target[1, :, 0] == [*steer[d.n - 2 :], steer[-1], steer[-1], steer[-1]]).all()


def test_smooth_trains_on_the_centred_mean_within_the_drive(tiny_cache, tmp_path):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk, smoothed

    x = np.array([0.0, 3.0, 0.0, 0.0, 6.0])
    # each row: the mean of the 2k+1 values around it; near the ends, of those that exist
    assert smoothed(x, 1) == pytest.approx([1.5, 1.0, 1.0, 2.0, 3.0])
    assert smoothed(x, 0) is x

    cache = Cache.open(tiny_cache)
    d = cache.drives[0]
    steer = np.asarray(d.signals["steering"], np.float64)
    reader = BatchReader(cache, ["steering", "speed"], 5, 2, smooth=2)
    _, target, _ = reader.read([Chunk(0, 10, True), Chunk(0, 10, True, flip=True)])
    want = [steer[t - 2 : t + 3].mean() for t in range(10, 15)]
    assert target[0, :, 0] == pytest.approx(want, abs=1e-5)
    assert target[1, :, 0] == pytest.approx(-np.array(want), abs=1e-5)  # mirrored as before
    assert (d.signals["steering"] == steer.astype(d.signals["steering"].dtype)).all()
    # smoothing reads labels ahead: past the guard between splits it is refused, like a lead
    guard = cache.manifest["splits"]["config"]["guard"]
    with pytest.raises(SteertimeError, match=f"data.lead \\+ data.smooth = {guard + 1}"):
        train(_cfg(tiny_cache, tmp_path / "far", "data.lead=1", f"data.smooth={guard}"))


def test_validation_scores_the_led_targets(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.models import OutputLayout
    from steertime.stream.segments import predict_segment
    from steertime.train.validate import stream_metrics

    cache = Cache.open(tiny_cache)
    seg = cache.segments("val")[0]
    d = cache.drives[seg.drive]
    layout = OutputLayout(["steering"], [0.0], [1.0])
    torch.manual_seed(0)
    model = create_model("pilotnet", height=d.height, width=d.width).eval()
    pred = predict_segment(model, cache, seg, torch.device("cpu"))[:, 0]
    rows = np.minimum(np.arange(seg.start + 4, seg.stop + 4), d.n - 1)
    want = float(np.sqrt(np.mean((pred - d.signals["steering"][rows]) ** 2)))
    got = stream_metrics(model, cache, [seg], layout, torch.device("cpu"), lead=4)
    assert got["rmse_steering"] == pytest.approx(want, rel=1e-6)
    plain = stream_metrics(model, cache, [seg], layout, torch.device("cpu"))
    assert plain["rmse_steering"] != pytest.approx(want, rel=1e-6)


def test_lead_is_recorded_with_the_run_and_negative_lead_refused(tiny_cache, tmp_path):
    run = tmp_path / "lead"
    train(_cfg(tiny_cache, run, "data.lead=2", "train.max_steps=3"), progress=False)
    assert load_config(run / "config.yaml").data.lead == 2
    assert read_meta(run / "checkpoints" / "best")["lead_frames"] == 2
    with pytest.raises(SteertimeError, match="data.lead must be >= 0 frames, got -1"):
        train(_cfg(tiny_cache, tmp_path / "neg", "data.lead=-1"))
    # past the guard between splits, a led target would be a validation label
    from steertime.data import Cache

    guard = Cache.open(tiny_cache).manifest["splits"]["config"]["guard"]
    with pytest.raises(
        SteertimeError, match=f"beyond the {guard}-frame guard.*--guard {guard + 1}"
    ):
        train(_cfg(tiny_cache, tmp_path / "far", f"data.lead={guard + 1}"))
    assert not (tmp_path / "far").exists()


@pytest.mark.parametrize(
    ("best_epoch", "epochs", "best", "last", "warned"),
    [
        (0, 8, 1.0, 2.0, True),  # epoch 1 of 8 best, then worse
        (1, 8, 1.0, 2.0, True),
        (2, 8, 1.0, 2.0, False),  # a quarter of the way in: not "barely trained"
        (0, 8, 1.0, 1.03, False),  # early best, but the end is level with it
        (0, 3, 1.0, 2.0, False),  # too few epochs to say
        (7, 8, 1.0, 1.0, False),
    ],
)
def test_monitor_flags_an_early_best_checkpoint(best_epoch, epochs, best, last, warned):
    from steertime.train.monitor import TrainingMonitor

    m = TrainingMonitor(torch.nn.Linear(1, 1), None, clip=1.0, detailed=False)
    m.after_training(best_epoch, epochs, best, last)
    assert any("checkpoints/best is from epoch" in t for t in m.messages) == warned


def test_training_writes_the_early_best_warning(tiny_cache, tmp_path, monkeypatch):
    # With a small validation block a barely trained epoch can score best by luck, and
    # checkpoints/best is what predict, evaluate and drive load: say so.
    import steertime.train.loop as loop

    calls = iter([1.0, 2.0, 2.0, 2.0])
    monkeypatch.setattr(loop, "stream_metrics", lambda *a, **k: {"rmse_steering": next(calls)})
    run = train(_cfg(tiny_cache, tmp_path / "r", "train.epochs=4", "train.soup=0"), progress=False)
    text = (run / "warnings.txt").read_text()
    assert "checkpoints/best is from epoch 1 of 4 (validation score 1, 2 after" in text
    assert read_meta(run / "checkpoints" / "best")["epoch"] == 0


def test_weight_ema_averages_and_applies_without_touching_the_model():
    from steertime.train.ema import WeightEMA

    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = WeightEMA(m, decay=0.5)
    ref = torch.zeros_like(m.weight)
    for n, w in enumerate([1.0, 2.0, 3.0], start=1):
        with torch.no_grad():
            m.weight.fill_(w)
        ema.update(m)
        d = min(0.5, (1 + n) / (10 + n))
        ref = d * ref + (1 - d) * w
    torch.testing.assert_close(ema.shadow["weight"], ref)
    with ema.applied(m):
        torch.testing.assert_close(m.weight.detach(), ref)
    assert torch.all(m.weight == 3.0)  # the raw weights are back
    with pytest.raises(SteertimeError, match="optim.ema must be in"):
        WeightEMA(m, decay=1.0)


def test_ema_run_keeps_the_averaged_weights_as_best(tiny_cache, tmp_path):
    run = train(_cfg(tiny_cache, tmp_path / "r", "optim.ema=0.9", "train.epochs=1"), progress=False)
    best = load_file(run / "checkpoints" / "best" / "model.safetensors")
    raw = load_file(run / "checkpoints" / "last" / "model.safetensors")
    assert any(not torch.equal(best[k], raw[k]) for k in raw if raw[k].is_floating_point())


def test_warmup_longer_than_the_run_is_shortened_with_a_warning(tiny_cache, tmp_path, capsys):
    from steertime.train.monitor import effective_warmup

    assert effective_warmup(100, 1000) == (100, "")  # a tenth of the run: as asked
    scaled, note = effective_warmup(100, 28)  # issue 24: 2 epochs of 14 steps
    assert scaled == 3 and "shortened to 3 steps" in note
    run = train(_cfg(tiny_cache, tmp_path / "r", "optim.warmup_steps=100"), progress=True)
    assert "optim.warmup_steps=100 is longer" in (run / "warnings.txt").read_text()
    from steertime.train.optim import lr_at

    cfg = _cfg(tiny_cache, tmp_path / "x").optim
    assert lr_at(1, 14, cfg, warmup=1) == pytest.approx(cfg.lr, rel=0.02)  # full lr at once
    err = capsys.readouterr().err
    assert "epoch 1/1: train loss" in err and "val rmse_steering" in err and "best" in err
    assert err.count("\r") <= 4  # off a terminal: no redraw per step (issue 24: 117 KB)


def test_monitor_says_when_the_loss_stays_at_the_label_variance():
    import numpy as np

    from steertime.train.monitor import LEARN_CHECK, TrainingMonitor, label_note

    m = TrainingMonitor(torch.nn.Linear(1, 1), None, clip=1.0, detailed=False)
    m.labels = label_note({"steering": np.repeat([-0.02, 0.0, 0.02], 100)})
    assert "3 distinct values" in m.labels
    for step in range(LEARN_CHECK):
        m.after_backward(step, 1.0, 1e-3)
        m.after_step(step, 0.95)
    (msg,) = [t for t in m.messages if "not learning" in t]
    assert "0.95 of the label variance" in msg and "3 distinct values" in msg
    ok = TrainingMonitor(torch.nn.Linear(1, 1), None, clip=1.0, detailed=False)
    for step in range(LEARN_CHECK):
        ok.after_step(step, 0.3)
    assert not any("not learning" in t for t in ok.messages)


def _assert_drawn_per_state_run(augment, *fields: str) -> None:
    """The chunks of each lane keep `fields` until the lane's state is reset, and the
    draws do change between state runs."""
    steps = stateful_schedule(
        [Segment(0, "train", 0, 203)], 10, 2, seed=3, epoch=1, augment=augment
    )
    seen = set()
    for b in range(2):
        lane = [row[b] for row in steps]
        for prev, cur in zip(lane, lane[1:], strict=False):
            if not cur.reset:
                assert [getattr(cur, f) for f in fields] == [getattr(prev, f) for f in fields]
        seen |= {tuple(getattr(c, f) for f in fields) for c in lane}
    assert len(seen) > 1


def test_color_jitter_keeps_grey_mean_and_is_drawn_per_state_run(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import Augment, BatchReader, Chunk, relit

    rng = np.random.default_rng(0)
    x = rng.integers(40, 200, (2, 6, 8, 3)).astype(np.uint8)  # (T, H, W, 3)
    assert (relit(x) == x).all()
    grey = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    flat = relit(x, saturation=0.0).astype(np.float32)
    assert np.abs(flat - grey[..., None]).max() <= 1  # no saturation: every channel grey
    low = relit(x, contrast=0.5).astype(np.float32)
    assert low.std() < 0.6 * x.std()  # half the contrast, about the same mean
    assert abs(low.mean() - x.mean()) < 2
    red = relit(x, tint=(1.2, 1.0, 1.0))
    assert (red[..., 1:] == x[..., 1:]).all() and red[..., 0].mean() > x[..., 0].mean()

    cache = Cache.open(tiny_cache)
    reader = BatchReader(cache, ["steering"], 5, 2)
    kw = {"contrast": 1.3, "saturation": 0.7, "tint": (0.9, 1.0, 1.1)}
    frames, target, _ = reader.read([Chunk(0, 20, True), Chunk(0, 20, True, **kw)])
    assert (frames[1] == relit(frames[0].copy(), **kw)).all()
    assert (target[1] == target[0]).all()

    draws = [Augment(color=0.2).draw(rng) for _ in range(200)]
    assert all(0.8 <= d["contrast"] <= 1.2 and 0.8 <= d["saturation"] <= 1.2 for d in draws)
    assert all(0.9 <= g <= 1.1 for d in draws for g in d["tint"])
    with_color = Augment(shift=2, color=0.2).draw(np.random.default_rng(0))
    for key in ("contrast", "saturation", "tint"):  # drawn last: the rest is as without it
        del with_color[key]
    assert with_color == Augment(shift=2).draw(np.random.default_rng(0))
    _assert_drawn_per_state_run(Augment(color=0.3), "contrast", "saturation", "tint")
    with pytest.raises(SteertimeError, match="data.color"):
        apply_overrides(TrainConfig(), ["data.color=1.5"]).validate()


def test_motion_blur_smears_rows_and_is_drawn_per_state_run(tiny_cache):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import Augment, BatchReader, Chunk, blurred

    x = np.zeros((1, 2, 9, 3), np.uint8)  # (T, H, W, 3)
    x[:, :, 4] = 90  # one bright column
    assert (blurred(x, 1) == x).all()
    three = blurred(x, 3)
    assert (three[:, :, 3:6] == 30).all() and (three[:, :, :3] == 0).all()
    assert (three[:, :, 6:] == 0).all()  # the light is spread, not moved
    edge = np.arange(9, dtype=np.uint8)[None, None, :, None].repeat(3, -1)  # a ramp
    flat = np.full((2, 3, 7, 3), 200, np.uint8)
    assert (blurred(flat, 5) == flat).all()  # edges repeated: no dark border
    assert blurred(edge, 4).shape == edge.shape
    assert (blurred(edge, 3)[0, 0, 1:-1, 0] == edge[0, 0, 1:-1, 0]).all()  # linear ramps keep

    cache = Cache.open(tiny_cache)
    reader = BatchReader(cache, ["steering"], 5, 2)
    frames, target, _ = reader.read([Chunk(0, 20, True), Chunk(0, 20, True, blur=4)])
    assert (frames[1] == blurred(frames[0].copy(), 4)).all()
    assert (target[1] == target[0]).all()

    rng = np.random.default_rng(0)
    draws = {Augment(blur=3).draw(rng)["blur"] for _ in range(200)}
    assert draws == {1, 2, 3}
    with_blur = Augment(color=0.2, blur=3).draw(np.random.default_rng(0))
    del with_blur["blur"]  # drawn last: the draws before it are those of a run without it
    assert with_blur == Augment(color=0.2).draw(np.random.default_rng(0))
    _assert_drawn_per_state_run(Augment(blur=6), "blur")
    with pytest.raises(SteertimeError, match="data.blur"):
        apply_overrides(TrainConfig(), ["data.blur=40"]).validate()


def test_sequence_mixup_blends_lanes_frames_and_targets_alike(tiny_cache, tmp_path):
    import numpy as np

    from steertime.data import Cache
    from steertime.train.batches import Augment, BatchReader, Chunk, mixed

    cache = Cache.open(tiny_cache)
    reader = BatchReader(cache, ["steering"], 5, 3)
    plain = [Chunk(0, 20, True), Chunk(0, 100, True), Chunk(0, 200, True)]
    f0, t0, _ = (a.copy() for a in reader.read(plain))
    blend = [Chunk(0, 20, True, mix=0.75, mix_offset=4), *plain[1:]]  # 4 % 3: lane 1
    f1, t1, _ = reader.read(blend)
    want = np.rint(0.75 * f0[0].astype(np.float32) + 0.25 * f0[1].astype(np.float32))
    assert (f1[0] == want).all() and (f1[1:] == f0[1:]).all()
    assert np.allclose(t1[0], 0.75 * t0[0] + 0.25 * t0[1]) and (t1[1:] == t0[1:]).all()
    assert (mixed(f0[:1], blend[:1]) == f0[:1]).all()  # one lane: nothing to blend with

    draws = [Augment(mixup=0.4).draw(np.random.default_rng(k)) for k in range(200)]
    assert all(0.5 <= d["mix"] <= 1 and d["mix_offset"] >= 1 for d in draws)
    assert Augment(color=0.2).draw(np.random.default_rng(0)) == Augment(color=0.2, mixup=0).draw(
        np.random.default_rng(0)
    )  # a run without mixup draws as before
    segs = [Segment(0, "train", 0, 203)]
    steps = stateful_schedule(segs, 10, 2, seed=3, epoch=1, augment=Augment(mixup=0.4))
    for b in range(2):  # one blend per run of chunks that share a state
        lane = [row[b] for row in steps]
        for prev, cur in zip(lane, lane[1:], strict=False):
            if not cur.reset:
                assert (cur.mix, cur.mix_offset) == (prev.mix, prev.mix_offset)
    run = train(_cfg(tiny_cache, tmp_path / "mix", "data.mixup=0.4"), progress=False)
    assert "mixup: 0.4" in (run / "config.yaml").read_text()
    with pytest.raises(SteertimeError, match="data.mixup"):
        apply_overrides(TrainConfig(), ["data.mixup=-1"]).validate()
    bad = _cfg(tiny_cache, tmp_path / "bad", "data.mixup=0.4", "data.faults=drop:0.3@5")
    with pytest.raises(SteertimeError, match="data.mixup blends frames"):
        train(bad, progress=False)
