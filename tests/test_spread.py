"""`train.spread`: a Gaussian NLL head whose spread is calibrated on validation, streamed,
exported and scored (90% interval coverage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.errors import SteertimeError
from steertime.evaluate.run import evaluate
from steertime.evaluate.verdict import verdicts
from steertime.models import create_model
from steertime.models.checkpoint import read_run_meta
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.train import train
from steertime.train.step import StepLoss
from tests.conftest import small_train_config


def test_spread_loss_is_mse_for_means_and_gaussian_nll_for_spreads():
    model = create_model("pilotnet", n_outputs=4, height=66, width=200)
    loss = StepLoss(model, [1.0, 3.0], steer=0, lam=0.5, skip=0, spread=True)
    w = torch.tensor([0.25, 0.75])
    y = torch.randn(3, 5, 4, requires_grad=True)
    t = torch.randn(3, 5, 2)
    ours = loss._mse(y, t)
    nll = torch.nn.GaussianNLLLoss(reduction="none", full=False)  # 0.5 (log var + err²/var)

    def ref(mu_for_nll: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        per = (yy[..., :2] - t).square() + nll(mu_for_nll, t, torch.exp(2 * yy[..., 2:]))
        return (per.mean((0, 1)) * w).sum()

    assert torch.allclose(ours, ref(y[..., :2], y), atol=1e-6)
    g = torch.autograd.grad(ours, y)[0]
    y2 = y.detach().clone().requires_grad_(True)
    g_ref = torch.autograd.grad(ref(y2[..., :2].detach(), y2), y2)[0]
    assert torch.allclose(g, g_ref, atol=1e-6)
    # The means' gradient is the plain MSE's: the spread never pulls on them.
    mse_only = StepLoss(model, [1.0, 3.0], steer=0, lam=0.5, skip=0)
    y3 = y.detach()[..., :2].clone().requires_grad_(True)
    g_mse = torch.autograd.grad(mse_only._mse(y3, t), y3)[0]
    assert torch.allclose(g[..., :2], g_mse, atol=1e-6)


def test_spread_is_calibrated_streamed_and_exported(spread_run, tiny_cache, tmp_path):
    meta = read_run_meta(spread_run)
    assert meta.layout.spread and len(meta.layout.spread_scale) == 2
    assert all(s > 0 for s in meta.layout.spread_scale)
    assert "z90_steering" in meta["val"]
    from steertime.data import Cache

    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 8)
    a, b = Predictor.from_run(spread_run), OnnxPredictor(export_onnx(spread_run, tmp_path / "x"))
    for f in frames:  # cache frames are model-sized: the step after preprocessing
        x, y = a.layout.parse(a._run(f)), b.layout.parse(b._run(f))
        assert x["steering_std"] > 0 and x["speed_std"] > 0
        for k in ("steering", "steering_std", "speed_std"):
            assert abs(x[k] - y[k]) < 1e-4 * max(1.0, abs(x[k])), (k, x[k], y[k])


def test_evaluate_reports_interval_coverage(spread_run, tiny_cache):
    result, _, _ = evaluate(spread_run, tiny_cache, split="val")
    m = result["outputs"]["steering"]["models"][result["primary"]]
    # Calibrated on these very frames: the 90% interval covers 90% of them.
    assert m["coverage90"] == pytest.approx(0.9, abs=0.03)
    assert m["mean_spread"] > 0
    assert any("90% interval covers" in v.text for v in verdicts(result))


def test_evaluate_writes_the_calibration_curve_and_the_spreads(spread_run, tiny_cache, tmp_path):
    """Issue 23: a calibration plot in `evaluate`, its points in metrics.json, the spreads
    in predictions.parquet; the curve agrees with the 90% figure and rises with the level."""
    import pandas as pd

    from steertime.evaluate import evaluate_to_dir

    out = tmp_path / "ev"
    result = evaluate_to_dir(spread_run, tiny_cache, out, split="val")
    m = result["outputs"]["steering"]["models"][result["primary"]]
    cov = m["coverage"]
    assert list(cov) == ["0.5", "0.8", "0.9", "0.95"]
    assert cov["0.9"] == pytest.approx(m["coverage90"])
    assert cov["0.5"] < cov["0.8"] < cov["0.95"]
    for name in ("steering", "speed"):
        assert (out / f"calibration_{name}.png").stat().st_size > 1000
    assert "calibration_steering" in (out / "report.html").read_text()
    preds = pd.read_parquet(out / "predictions.parquet")
    col = f"{result['primary']}:steering_std"
    assert col in preds and (preds[col] > 0).all()
    # the scored coverage is the plotted one: recomputed from the parquet's columns
    err = (preds[f"{result['primary']}:steering"] - preds["true_steering"]).abs()
    assert float((err <= 1.6448536 * preds[col]).mean()) == pytest.approx(m["coverage90"])


def test_no_calibration_plot_without_a_spread(tiny_cache, tmp_path):
    from steertime.evaluate.plots import calibration
    from steertime.evaluate.run import Frames

    f = Frames(np.arange(3.0), np.array(["d"] * 3), {"steering": np.zeros(3)}, {}, 10.0)
    f.preds["m"] = {"steering": np.zeros(3)}
    assert calibration(f, "steering", tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


def test_interval_coverage_of_an_honest_gaussian():
    from steertime.evaluate.metrics import interval_coverage

    rng = np.random.default_rng(0)
    sd = rng.uniform(0.5, 2.0, 200_000)
    true = rng.normal(0.0, sd)
    for level in (0.5, 0.9, 0.99):
        assert interval_coverage(np.zeros_like(sd), true, sd, level) == pytest.approx(
            level, abs=0.005
        )
    # twice too confident: the 90% interval covers only ~59%
    assert interval_coverage(np.zeros_like(sd), true, sd / 2, 0.9) == pytest.approx(0.59, abs=0.01)


def test_a_led_spread_run_is_covered_on_the_target_it_was_calibrated_on(tiny_cache, tmp_path):
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "led",
        "model.name=cnn_lstm",
        "train.spread=true",
        "train.epochs=2",
        "data.lead=3",
    )
    run = train(cfg, progress=False)
    result, _, _ = evaluate(run, tiny_cache, split="val")
    m = result["outputs"]["steering"]["models"][result["primary"]]
    # calibrated on these frames against the log 3 frames later, not the same frame
    assert m["lead_frames"] == 3
    assert m["coverage90_vs_trained_target"] == pytest.approx(0.9, abs=0.03)
    assert any("covers" in v.text and "trained on" in v.text for v in verdicts(result))


def test_spread_refused_for_autoregressive_models(tiny_cache, tmp_path):
    cfg = small_train_config(
        tiny_cache, tmp_path / "r", "model.name=cnn_lstm_ar", "train.spread=true"
    )
    with pytest.raises(SteertimeError, match="feeds its outputs back"):
        train(cfg, progress=False)


def test_spread_runs_join_an_ensemble_that_has_a_spread(spread_run, tiny_cache, tmp_path):
    from steertime.data import Cache
    from steertime.models.ensemble import build_ensemble

    ens = build_ensemble([spread_run, spread_run], tmp_path / "ens")
    lay = read_run_meta(ens).layout
    assert lay.spread and lay.spread_scale == [1.0, 1.0]  # members come calibrated
    # Two copies of one run: the mixture of two equal Gaussians is that Gaussian.
    one, two = Predictor.from_run(spread_run), Predictor.from_run(ens)
    for f in Cache.open(tiny_cache).drives[0].read_frames(0, 6):
        x, y = one.layout.parse(one._run(f)), two.layout.parse(two._run(f))
        for k in ("steering", "steering_std", "speed_std"):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), k
    result, _, _ = evaluate(ens, tiny_cache, split="val")
    assert "coverage90" in result["outputs"]["steering"]["models"][result["primary"]]


def test_layout_without_spread_ignores_extra_columns():
    from tests.conftest import LAYOUT

    y = np.array([0.1, 0.2])
    assert LAYOUT.physical(y).shape == (2,) and "steering_std" not in LAYOUT.parse(y)


def testtakeover_counts_warned_and_false_requests():
    from steertime.sim.drive import takeover_counts

    asking = np.zeros(100, bool)
    asking[10:13] = True  # warns the intervention at 14 (2 steps after the request)
    asking[50:52] = True  # nothing follows: a false request
    c = takeover_counts(asking, hits=[14, 80], lead=3)
    assert c == {"takeover_requests": 2, "warned_interventions": 1, "false_requests": 1}


def test_the_live_takeover_rule_is_the_offline_one():
    """`drive --video` applies the rule frame by frame; it must ask on the same frames."""
    from steertime.sim.drive import Takeover

    rng = np.random.default_rng(1)
    spreads = rng.uniform(0, 2, 300)
    for rule in (Takeover(1.0), Takeover(1.2, hold=3)):
        live = rule.live()
        assert [live(float(x)) for x in spreads] == rule.asking(spreads).tolist()


def test_takeover_hold_lets_a_short_spike_pass():
    from steertime.sim.drive import Takeover

    spreads = np.array([0, 5, 0, 5, 5, 5, 5, 0, 5, 5], float)
    assert Takeover(1.0).asking(spreads).tolist() == (spreads > 1).tolist()
    # held for 3 frames: the lone spike and the final pair never ask; the run of 4 asks
    # from its third frame on
    got = Takeover(1.0, hold=3).asking(spreads)
    assert np.flatnonzero(got).tolist() == [5, 6]
    with pytest.raises(SteertimeError, match="hold"):
        Takeover(1.0, hold=0)
    # the vectorised run length agrees with counting step by step
    rng = np.random.default_rng(0)
    for hold in (2, 3, 5):
        flag = rng.random(200) < 0.6
        run, want = 0, []
        for f in flag:
            run = run + 1 if f else 0
            want.append(run >= hold)
        assert Takeover(0.5, hold).asking(flag.astype(float)).tolist() == want


class _Unsure:
    """Steers straight and always says it is unsure: every intervention is warned."""

    source_size = (66, 200)

    def reset(self) -> None:
        pass

    def step(self, frame, t):
        return {"steering": 0.0, "steering_std": 5.0}


def test_drive_reports_takeover_requests():
    from steertime.sim import drive, heldout_seeds
    from steertime.sim.drive import Takeover

    s = drive(_Unsure(), heldout_seeds(0, 1), 40.0, takeover=Takeover(1.0)).summary()
    assert s["interventions"] > 0 and s["warned_interventions"] == s["interventions"]
    assert s["takeover_requests"] == 1  # one request that never ends
    calm = drive(_Unsure(), heldout_seeds(0, 1), 40.0, takeover=Takeover(9.0)).summary()
    assert calm["takeover_requests"] == 0 and calm["warned_interventions"] == 0


class _Wavering(_Unsure):
    """Unsure now and then, so that some requests are false and some warn."""

    def step(self, frame, t):
        return {"steering": 0.0, "steering_std": 5.0 if int(t) % 7 < 2 else 1.0}


def test_traced_drive_replays_the_rule_the_car_applies():
    from steertime.sim import drive, heldout_seeds
    from steertime.sim.drive import Takeover
    from steertime.sim.takeover import counts, traced_drive

    seeds = heldout_seeds(0, 2)
    trace = traced_drive(_Wavering(), seeds, 30.0)
    per_road = trace["summary"]["per_road"]
    assert len(trace["roads"]) == 2
    for road, res in zip(trace["roads"], per_road, strict=True):
        assert len(road["std"]) == round(res["seconds"] * 10)  # one spread per step
        assert len(road["hits"]) == res["interventions"]
    for rule in (Takeover(3.0), Takeover(3.0, hold=5)):
        live = drive(_Wavering(), seeds, 30.0, takeover=rule).summary()
        replay = counts(trace, rule.spread, rule.hold)
        for k in ("takeover_requests", "warned_interventions", "false_requests"):
            assert replay[k] == live[k], k
    assert live["interventions"] > 0 and live["takeover_requests"] > 0


def test_takeover_spread_needs_a_spread_run(tmp_path):
    from typer.testing import CliRunner

    from steertime.cli import app
    from tests.conftest import make_run

    run = make_run(tmp_path, "pilotnet")
    res = CliRunner().invoke(app, ["drive", str(run), "--roads", "1", "--takeover-spread", "1"])
    assert isinstance(res.exception, SteertimeError)
    assert "needs a run trained with train.spread=true" in str(res.exception)


def test_takeover_rule_is_chosen_on_validation_traces():
    from steertime.sim.takeover import counts, pick_rule

    def trace(std, hits, interventions):
        return {
            "summary": {"minutes": 10.0, "interventions": interventions},
            "roads": [{"std": std, "hits": hits}],
        }

    spike = [1.0] * 30
    spike[10] = 8.0  # one clean frame where the model is briefly unsure
    blind = [1.0] * 30
    blind[2:6] = [5.0] * 4  # a blackout: unsure for 4 frames, then the car leaves the lane
    clean, faulty = trace(spike, [], 0), trace(blind, [6], 1)
    chosen = pick_rule(clean, faulty, max_false=0.5)
    # H = 1 must sit above the spike (8) and so never warns; H = 3 lets the spike pass
    # and warns of the departure at a threshold between 1 and 5.
    assert chosen.takeover.hold == 3 and 1.0 <= chosen.takeover.spread < 5.0
    assert chosen.faulty["warned_interventions"] == 1 and chosen.clean["false_requests"] == 0
    assert counts(clean, 7.0)["false_requests"] == 1  # what H = 1 below the spike would do


def test_takeover_rule_cli(spread_run, tmp_path):
    import json

    from typer.testing import CliRunner

    from steertime.cli import app

    out = tmp_path / "rule.json"
    args = ["takeover-rule", str(spread_run), "--roads", "1", "--minutes", "0.2"]
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    rule = json.loads(out.read_text())
    assert rule["takeover_hold"] in (1, 3, 5) and rule["takeover_spread"] > 0
    assert "--takeover-spread" in res.output
    res = CliRunner().invoke(app, [*args, "--faults", ""])
    assert isinstance(res.exception, SteertimeError) and "give --faults" in str(res.exception)
    from tests.conftest import make_run

    plain = make_run(tmp_path, "pilotnet")  # predicts no spread
    res = CliRunner().invoke(app, ["takeover-rule", str(plain), "--roads", "1"])
    assert isinstance(res.exception, SteertimeError)
    assert "a takeover rule needs a run trained with train.spread=true" in str(res.exception)
