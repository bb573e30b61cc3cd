"""Udacity Challenge 2 scoring on a small synthetic evaluation file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.errors import DataError
from steertime.evaluate.udacity_ch2 import evaluate_ch2, read_evaluation
from tests.conftest import LAYOUT
from tests.hmb_bags import write_hmb_bag

runner = CliRunner()


def _evaluation(tmp_path, ids, seed=0):
    rng = np.random.default_rng(seed)
    ev = pd.DataFrame(
        {
            "frame_id": np.asarray(ids, np.int64),
            "steering_angle": rng.normal(0, 0.2, len(ids)),
            "public": (np.arange(len(ids)) % 3 != 0).astype(int),
        }
    )
    ev.to_csv(tmp_path / "CH2_final_evaluation.csv", index=False)
    return ev


def _rmse(e) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


def test_submission_scored_by_frame_id_public_private_overall(tmp_path):
    ids = 1_479_425_441_182_877_835 + 50_000_000 * np.arange(30)
    ev = _evaluation(tmp_path, ids)
    err = np.random.default_rng(1).normal(0, 0.05, 30)
    sub = pd.DataFrame({"frame_id": ids, "steering_angle": ev["steering_angle"] + err})
    sub.sample(frac=1, random_state=0).to_csv(tmp_path / "sub.csv", index=False)  # any order
    r = evaluate_ch2(tmp_path / "CH2_final_evaluation.csv", tmp_path / "sub.csv")
    pub = ev["public"].to_numpy() == 1
    assert r["rmse"]["public"] == pytest.approx(_rmse(err[pub]))
    assert r["rmse"]["private"] == pytest.approx(_rmse(err[~pub]))
    assert r["rmse"]["overall"] == pytest.approx(_rmse(err))
    assert r["zeros"]["public"] == pytest.approx(_rmse(ev["steering_angle"][pub]))
    assert r["frames"] == {"public": 20, "private": 10, "overall": 30}
    # a steertime predict table (t in seconds, as a CSV writes it) joins the same frames
    pred = pd.DataFrame({"t": ids * 1e-9, "steering": sub.sort_index()["steering_angle"]})
    pred.to_csv(tmp_path / "pred.csv", index=False)
    r2 = evaluate_ch2(tmp_path / "CH2_final_evaluation.csv", tmp_path / "pred.csv")
    assert r2["rmse"] == pytest.approx(r["rmse"])
    # a frame without a prediction is an error: the board scores every frame
    sub.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"short\.csv: 1 of 30 evaluation frames have no pred"):
        evaluate_ch2(tmp_path / "CH2_final_evaluation.csv", tmp_path / "short.csv")


def test_bad_evaluation_file_names_row_and_field(tmp_path):
    (tmp_path / "e.csv").write_text("frame_id,steering_angle,public\n1,0.1,1\n2,abc,0\n")
    with pytest.raises(DataError, match=r"e\.csv: row 3: field 'steering_angle'"):
        read_evaluation(tmp_path / "e.csv")
    (tmp_path / "f.csv").write_text("frame_id,angle\n1,0.1\n")
    with pytest.raises(DataError, match=r"missing columns \['steering_angle', 'public'\]"):
        read_evaluation(tmp_path / "f.csv")


def test_cli_scores_a_run_over_a_test_bag_without_steering(tmp_path):
    from steertime.data import FrameSpec
    from steertime.models.checkpoint import save_untrained_run

    ids = write_hmb_bag(tmp_path / "HMB_3.bag", 12, steering=False, compress=False)
    ev = _evaluation(tmp_path, ids)
    run = save_untrained_run(
        tmp_path / "run", "pilotnet", LAYOUT, FrameSpec(66, 200).to_dict(), (48, 64)
    )
    evaluation = str(tmp_path / "CH2_final_evaluation.csv")
    args = ["evaluate", str(run), "--data", str(tmp_path / "HMB_3.bag")]
    r = runner.invoke(app, [*args, "--udacity-ch2", evaluation, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "Komanda (final board)" in r.output and "0.0483" in r.output and "0.2068" in r.output
    got = json.loads((tmp_path / "o" / "udacity_ch2.json").read_text())
    # the same run predicted frame by frame; LAYOUT's steering is in degrees
    r = runner.invoke(
        app,
        ["predict", str(run), str(tmp_path / "HMB_3.bag"), "--format", "udacity_bag_frames"]
        + ["--out", str(tmp_path / "p.csv")],
    )
    assert r.exit_code == 0, r.output
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["row"].tolist() == ev["frame_id"].tolist()
    err = np.deg2rad(p["steering"].to_numpy()) - ev["steering_angle"].to_numpy()
    pub = ev["public"].to_numpy() == 1
    assert got["rmse"]["public"] == pytest.approx(_rmse(err[pub]), rel=1e-5)
    assert got["rmse"]["overall"] == pytest.approx(_rmse(err), rel=1e-5)


def test_released_test_images_score_like_the_bag_they_came_from(tmp_path):
    """Ch2_001 ships the test frames as center/<frame_id>.jpg: the same pictures as a bag's
    frames give the same score."""
    from steertime.data import FrameSpec
    from steertime.models.checkpoint import save_untrained_run
    from tests.hmb_bags import frame_value, jpeg

    ids = write_hmb_bag(tmp_path / "bag" / "HMB_3.bag", 10, steering=False, compress=False)
    (tmp_path / "Ch2_001" / "center").mkdir(parents=True)
    for k, i in enumerate(ids):
        (tmp_path / "Ch2_001" / "center" / f"{i}.jpg").write_bytes(jpeg(frame_value(k)))
    _evaluation(tmp_path, ids)
    run = save_untrained_run(
        tmp_path / "run", "pilotnet", LAYOUT, FrameSpec(66, 200).to_dict(), (48, 64)
    )
    ev = tmp_path / "CH2_final_evaluation.csv"
    from_bag = evaluate_ch2(ev, run, tmp_path / "bag")
    from_images = evaluate_ch2(ev, run, tmp_path / "Ch2_001")
    assert from_images["rmse"] == pytest.approx(from_bag["rmse"], rel=1e-6)
    assert from_images["rmse"]["overall"] != pytest.approx(from_images["zeros"]["overall"])
