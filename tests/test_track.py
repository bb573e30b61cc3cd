"""`train.track`: a held-out cache scored every epoch, logged, and never read back."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from steertime.data import PrepareConfig, SplitConfig, read_drives
from steertime.data.cache import prepare_drives
from steertime.data.preprocess import FrameSpec
from steertime.errors import SteertimeError
from steertime.evaluate import evaluate
from steertime.evaluate.cost import training_cost
from steertime.train import train
from steertime.train.loop import resume_config
from tests.conftest import small_train_config

ARGS = ("train.threads=1", "train.epochs=3", "train.patience=10", "train.soup=2")


def _rows(run):
    return pd.read_csv(run / "metrics.csv").to_dict("records")


def _clip(shared_data, start, stop):
    (d,) = read_drives(shared_data / "udacity_sim_track1")
    return d.slice(np.arange(start, stop), f"clip{start}")


@pytest.fixture(scope="module")
def heldout(shared_data, tmp_path_factory):
    """Frames the tiny cache does not hold (rows 900-1000), prepared the same way."""
    out = tmp_path_factory.mktemp("track") / "heldout"
    prepare_drives(
        [_clip(shared_data, 900, 1000)], out, PrepareConfig(split=SplitConfig("tail", 0.0, 0.0))
    )
    return out


def test_tracking_changes_no_weight_and_scores_what_evaluate_scores(tiny_cache, heldout, tmp_path):
    plain = train(small_train_config(tiny_cache, tmp_path / "plain", *ARGS), progress=False)
    cfg = small_train_config(tiny_cache, tmp_path / "tracked", *ARGS, f"train.track={heldout}")
    tracked = train(cfg, progress=False)

    a, b = _rows(plain), _rows(tracked)
    assert [r["val_rmse_steering"] for r in a] == [r["val_rmse_steering"] for r in b]
    assert "track_rmse_steering" not in a[0] and "elapsed_s" in a[0]
    scores = [r["track_rmse_steering"] for r in b]
    assert all(np.isfinite(scores)) and len(set(scores)) == 3  # a new model each epoch
    elapsed = [r["elapsed_s"] for r in b]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    for name in ("best", "last"):
        w1 = load_file(plain / "checkpoints" / name / "model.safetensors")
        w2 = load_file(tracked / "checkpoints" / name / "model.safetensors")
        assert all(np.array_equal(w1[k].numpy(), w2[k].numpy()) for k in w1), name

    # The kept model's tracked figure is the one `evaluate` gives it on those frames.
    soup = json.loads((tracked / "soup.json").read_text())
    assert soup["elapsed_s"] >= elapsed[-1]
    kept = soup["track_rmse_steering"] if soup["kept"] else scores[soup["best_epoch"]]
    result, _, _ = evaluate(tracked, heldout, split=None, threads=1)
    assert result["outputs"]["steering"]["models"][tracked.name]["rmse"] == pytest.approx(
        kept, rel=1e-5
    )

    # benchmarks/time_to_accuracy.py reads the first epoch at a target and the kept model
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        tta = importlib.import_module("time_to_accuracy")
    finally:
        sys.path.pop(0)
    r = tta.reading(tracked, target=scores[1])
    first = min(i for i, x in enumerate(scores) if x <= scores[1])
    assert r["first_epoch"] == first + 1 and r["first_s"] == pytest.approx(elapsed[first])
    assert r["kept"]["rmse"] == pytest.approx(kept) and r["curve"] == pytest.approx(
        scores, abs=1e-4
    )
    assert tta.reading(tracked, target=0.0)["first_epoch"] is None

    # Scoring changes no weight, so a resumed run may start or stop tracking.
    cfg, changes = resume_config(plain, ["train.epochs=4", f"train.track={heldout}"])
    assert cfg.train.track == str(heldout) and any("train.track" in c for c in changes)


def test_track_refuses_a_cache_it_cannot_score_before_writing(
    tiny_cache, heldout, shared_data, tmp_path
):
    other = tmp_path / "small_frames"
    prepare_drives(
        [_clip(shared_data, 900, 960)],
        other,
        PrepareConfig(frame=FrameSpec(height=33, width=100), split=SplitConfig("tail", 0.0, 0.0)),
    )
    cases = [
        (f"train.track={other}", "height 33 .*training: 66.*width 100"),
        (f"train.track={tmp_path / 'absent'}", "absent"),
        (f"train.track={heldout}\ntrain.track_split=test", "split 'test' has no frames"),
        ("train.track_split=held", "train.track_split must be all or train or val or test"),
    ]
    for i, (override, message) in enumerate(cases):
        out = tmp_path / f"r{i}"
        cfg = small_train_config(tiny_cache, out, *ARGS, *override.split("\n"))
        with pytest.raises(SteertimeError, match=message):
            train(cfg, progress=False)
        assert not out.exists()


def test_track_needs_every_output_in_the_tracked_cache(tiny_cache, shared_data, tmp_path):
    clip = _clip(shared_data, 900, 960)
    del clip.signals["throttle"]
    out = tmp_path / "no_throttle"
    prepare_drives([clip], out, PrepareConfig(split=SplitConfig("tail", 0.0, 0.0)))
    cfg = small_train_config(
        tiny_cache, tmp_path / "r", *ARGS, "data.outputs=steering,throttle", f"train.track={out}"
    )
    with pytest.raises(SteertimeError, match="no throttle to score"):
        train(cfg, progress=False)
    assert not (tmp_path / "r").exists()


def test_the_cli_says_when_the_kept_model_was_on_disk(tiny_cache, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from steertime.cli import app

    cfg = small_train_config(tiny_cache, tmp_path / "r", "train.threads=1", "train.epochs=2")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    r = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 0, r.output
    assert re.search(r"r: kept (epoch \d|soup) \(on disk after \d+ s\); trained 2 epochs", r.output)
    cost = training_cost(tmp_path / "r")  # the soup, validated at the end, is the last word
    assert f"trained 2 epochs, {cost['trained_s']:.0f} s" in r.output
