"""benchmarks/mirror_tta.py averages a run with itself on mirrored frames: on a frame that
is its own mirror image the averaged steering must be exactly 0 and the throttle what the
plain pass says, and the script must score every member of a run on the split asked."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from steertime.data.cache import Cache
from steertime.models.checkpoint import load_model
from steertime.train import train
from tests.conftest import BENCH, bench_module, small_train_config


@pytest.fixture(scope="module")
def run(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("mirror") / "r"
    cfg = small_train_config(
        tiny_cache,
        out,
        "train.threads=1",
        "model.name=cnn_lstm",
        "data.outputs=steering,throttle",
        "data.flip=true",
    )
    return train(cfg, progress=False)


def test_a_symmetric_view_averages_to_straight_ahead(run, tiny_cache):
    m = bench_module("mirror_tta")
    model, meta = load_model(run)
    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 30)
    half = frames[:, :, : frames.shape[2] // 2]
    sym = np.concatenate([half, half[:, :, ::-1]], axis=2)  # (T, H, W, 3), its own mirror
    plain = m.predict(model, meta.layout, sym, mirror=False)
    mirrored = m.predict(model, meta.layout, sym, mirror=True)
    s, t = meta.layout.names.index("steering"), meta.layout.names.index("throttle")
    assert np.abs(plain[:, s]).max() > 1e-4  # the test means something: it does steer
    np.testing.assert_allclose((plain[:, s] + mirrored[:, s]) / 2, 0, atol=1e-5)
    np.testing.assert_allclose(mirrored[:, t], plain[:, t], atol=1e-5)


def test_the_mirrored_pass_differs_on_a_real_view(run, tiny_cache):
    m = bench_module("mirror_tta")
    model, meta = load_model(run)
    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 30)
    plain = m.predict(model, meta.layout, frames, mirror=False)[:, 0]
    flipped = m.predict(model, meta.layout, frames[:, :, ::-1].copy(), mirror=False)[:, 0]
    np.testing.assert_allclose(m.predict(model, meta.layout, frames, mirror=True)[:, 0], -flipped)
    assert not np.allclose(plain, -flipped, atol=1e-4)


def test_the_script_pools_folds_and_writes_the_ratio(run, tiny_cache, tmp_path):
    out = tmp_path / "tta.json"
    fold = f"{tiny_cache}={run}"
    cmd = [sys.executable, str(BENCH / "mirror_tta.py"), "--fold", fold, "--fold", fold]
    subprocess.run([*cmd, "--splits", "val,test", "--out", str(out)], check=True)
    res = json.loads(out.read_text())
    segs = Cache.open(tiny_cache).segments("test")
    assert segs and res["test"]["frames"] == 2 * sum(len(s) for s in segs)  # both folds
    r = res["val"]
    assert r["ratio"] == pytest.approx(r["mirror_tta"] / r["plain"])
    assert len(r["members_plain"]) == 1 and r["members_plain"][0] == pytest.approx(r["plain"])
    bad = subprocess.run([*cmd[:2], "--fold", str(run)], capture_output=True, text=True)
    assert bad.returncode != 0 and "CACHE=RUN" in bad.stderr


def test_an_empty_split_and_a_missing_output_are_refused_by_name(run, tiny_cache):
    from steertime.errors import SteertimeError

    m = bench_module("mirror_tta")
    with pytest.raises(SteertimeError, match="split 'nope' is empty"):
        m.score_fold(tiny_cache, run, "nope")
    with pytest.raises(SteertimeError, match="not 'speed'"):
        m.score_fold(tiny_cache, run, "test", output="speed")
