"""`data.teacher`: training targets mixed with what trained runs predict (distillation)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from steertime.data import Cache, PrepareConfig, SplitConfig, read_drives
from steertime.data.cache import prepare_drives
from steertime.data.preprocess import FrameSpec
from steertime.errors import SteertimeError
from steertime.evaluate.run import predict_on_cache
from steertime.train import train
from steertime.train.batches import BatchReader, Chunk
from steertime.train.teacher import Teacher, load_teacher
from tests.conftest import small_train_config

ARGS = ("train.threads=1", "train.epochs=2", "train.soup=0")


@pytest.fixture(scope="module")
def teachers(tiny_cache, tmp_path_factory):
    """Two seeds of a small `cnn_lstm` on the tiny cache: the teachers."""
    root = tmp_path_factory.mktemp("teachers")
    return [
        train(small_train_config(tiny_cache, root / f"t{s}", *ARGS, f"train.seed={s}"), False)
        for s in (0, 1)
    ]


def _weights(run):
    return load_file(run / "checkpoints" / "best" / "model.safetensors")


def test_targets_are_the_teachers_average_on_training_rows(tiny_cache, teachers):
    cache = Cache.open(tiny_cache)
    t = load_teacher([str(r) for r in teachers], 1.0, cache, ["steering"], lead=0)
    preds = [predict_on_cache(r, cache, "train", threads=1)[0] for r in teachers]
    want = np.mean(
        [p.preds[r.name]["steering"] for p, r in zip(preds, teachers, strict=True)], axis=0
    )
    (seg,) = cache.segments("train")
    got = t.values[(seg.drive, "steering")]
    np.testing.assert_allclose(got[seg.start : seg.stop], want, rtol=1e-5, atol=1e-6)
    assert np.isnan(got[seg.stop :]).all()  # val and test rows are never targets

    # What the reader hands the loss: the blend of label and teacher on those rows.
    half = load_teacher([str(teachers[0])], 0.5, cache, ["steering"], lead=0)
    reader = BatchReader(cache, ["steering"], 5, 1, teacher=half)
    chunk = Chunk(drive=seg.drive, start=seg.start + 7, reset=True)
    _, targets, _ = reader.read([chunk])
    label = cache.drives[seg.drive].signals["steering"][seg.start + 7 : seg.start + 12]
    mine = preds[0].preds[teachers[0].name]["steering"][7:12]
    np.testing.assert_allclose(targets[0, :, 0], 0.5 * label + 0.5 * mine, rtol=1e-5, atol=1e-6)


def test_weight_zero_trains_the_same_weights_as_no_teacher(tiny_cache, teachers, tmp_path):
    """The teacher is built without drawing from the seed's random stream, and a weight
    of 0 leaves every target the label: the run is the plain run, bit for bit (with
    dropout, which draws from that stream every step)."""
    drop = (*ARGS, "model.dropout=0.3")
    plain = train(small_train_config(tiny_cache, tmp_path / "plain", *drop), False)
    cfg = small_train_config(
        tiny_cache, tmp_path / "t0", *drop, f"data.teacher={teachers[0]}", "data.teacher_weight=0"
    )
    zero = train(cfg, False)
    a, b = _weights(plain), _weights(zero)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    cfg = small_train_config(
        tiny_cache,
        tmp_path / "t1",
        *drop,
        f"data.teacher={teachers[0]},{teachers[1]}",
    )
    taught = train(cfg, False)
    c = _weights(taught)
    assert any(not np.array_equal(a[k].numpy(), c[k].numpy()) for k in a)
    assert all(np.isfinite(v.numpy()).all() for v in c.values())
    assert "teacher_weight: 1.0" in (taught / "config.yaml").read_text()


def test_refusals_name_the_teacher_and_the_field(tiny_cache, teachers, tmp_path, shared_data):
    cache = Cache.open(tiny_cache)
    run = str(teachers[0])
    with pytest.raises(SteertimeError, match=r"data.teacher=.*does not predict speed"):
        load_teacher([run], 0.5, cache, ["steering", "speed"], lead=0)
    with pytest.raises(SteertimeError, match=r"data.lead=0, this run with data.lead=2"):
        load_teacher([run], 0.5, cache, ["steering"], lead=2)
    # the same frames prepared at another size
    (d,) = read_drives(shared_data / "udacity_sim_track1")
    other = tmp_path / "other"
    spec = FrameSpec(48, 96)
    prepare_drives(
        [d.slice(np.arange(400, 500), "clip")],
        other,
        PrepareConfig(frame=spec, split=SplitConfig("tail", 0.2, 0.0)),
    )
    with pytest.raises(SteertimeError, match=r"prepared differently: height 66 \(this cache: 48\)"):
        load_teacher([run], 0.5, Cache.open(other), ["steering"], lead=0)
    cfg = small_train_config(tiny_cache, tmp_path / "bad", f"data.teacher={run}")
    cfg.data.teacher_weight = 1.5
    with pytest.raises(SteertimeError, match=r"data.teacher_weight must be in \[0, 1\], got 1.5"):
        train(cfg, False)
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_blend_keeps_labels_where_no_teacher_spoke():
    t = Teacher(["x"], 0.25, {(0, "steering"): np.array([np.nan, 1.0, np.nan], np.float32)})
    out = t.blend(0, "steering", np.array([0.2, 0.2, 0.2], np.float32))
    np.testing.assert_allclose(out, [0.2, 0.75 * 0.2 + 0.25, 0.2])
    assert t.blend(0, "throttle", np.ones(3)) is not None
