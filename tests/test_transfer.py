"""Transfer learning: pretrained EfficientNet-Lite0 offline, a features store that resumes
and refuses stale features, and LSTMs trained over cached features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.data import Cache
from steertime.data.features import FeatureStore, extract_features
from steertime.errors import SteertimeError
from steertime.models import create_encoder
from steertime.models.efficientnet import weights_path
from steertime.models.encoders import to_float
from tests.conftest import interrupt_on_call, small_train_config


def _probe_r2(feats: np.ndarray, y: np.ndarray, train: np.ndarray, lam: float = 1.0) -> float:
    """Ridge regression on standardised features (dual form); R² on the other frames."""
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-6
    x = (feats - mu) / sd
    ym = y[train].mean()
    a, b = x[train], y[train] - ym
    alpha = np.linalg.solve(a @ a.T + lam * a.shape[1] * np.eye(len(a)), b)
    pred = x[~train] @ (a.T @ alpha) + ym
    t = y[~train]
    return 1 - float(np.sum((pred - t) ** 2) / np.sum((t - t.mean()) ** 2))


def test_pretrained_weights_are_loaded_offline_and_really_pretrained(tiny_cache):
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    enc = create_encoder("efficientnet_lite0")
    assert torch.equal(enc.net._conv_stem.weight, state["_conv_stem.weight"])
    # ImageNet's batch-norm statistics survive construction (no train-mode forward pass)
    assert torch.equal(enc.net._bn1.running_var, state["_bn1.running_var"])
    rnd = create_encoder("efficientnet_lite0", pretrained=False)
    cache = Cache.open(tiny_cache)
    d = cache.drives[0]
    x = to_float(torch.from_numpy(d.read_frames(0, d.n)))
    with torch.no_grad():
        fp, fr = enc(x).numpy(), rnd(x).numpy()
    assert not np.allclose(fp, fr)
    # A linear probe for speed (visible in the scene) works on ImageNet features and beats
    # the same probe on a random network's features.
    # Alternate 1-second blocks between fitting and scoring the probe.
    train = (np.arange(d.n) // 10) % 2 == 0
    y = d.signals["speed"]
    r2_pre, r2_rnd = _probe_r2(fp, y, train), _probe_r2(fr, y, train)
    assert r2_pre > 0.3 and r2_pre > r2_rnd + 0.1, (r2_pre, r2_rnd)


def test_features_resume_and_refuse_stale(tiny_cache, tmp_path):
    cache = Cache.open(tiny_cache)
    clean = extract_features(cache, tmp_path / "clean")
    with pytest.raises(KeyboardInterrupt):
        extract_features(cache, tmp_path / "resumed", progress=interrupt_on_call(3))
    with pytest.raises(SteertimeError, match="did not finish"):
        FeatureStore(tmp_path / "resumed")
    extract_features(cache, tmp_path / "resumed")
    a, b = FeatureStore(clean), FeatureStore(tmp_path / "resumed")
    assert a.manifest["key"] == b.manifest["key"] and a.dim == 2560
    assert np.array_equal(a.read(0, 0, cache.drives[0].n), b.read(0, 0, cache.drives[0].n))
    with pytest.raises(SteertimeError, match="another encoder"):
        extract_features(cache, clean, encoder_cfg={"grid": (1, 3)})
    import dataclasses

    enc = create_encoder("efficientnet_lite0", grid=(1, 3))
    with pytest.raises(SteertimeError, match="stale features"):
        a.check("efficientnet_lite0", dataclasses.asdict(enc.cfg), cache)


def test_feat_lstm_trains_over_features_and_streams(tiny_cache, tmp_path):
    from steertime.stream import Predictor
    from steertime.train import train

    feats = extract_features(Cache.open(tiny_cache), tmp_path / "f")
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "run",
        "model.name=feat_lstm",
        "train.seq_len=50",
        "train.batch_size=2",
        "train.epochs=2",
        f"data.features={feats}",
    )
    run = train(cfg, progress=False)
    p = Predictor.from_run(run)  # the encoder runs per frame inside the step
    frame = Cache.open(tiny_cache).drives[0].read_frames(0, 1)[0]
    p.source_size = None
    out = p.step(frame, 0.0)
    assert np.isfinite(out["steering"])


def test_finetune_last_blocks_from_frames(tiny_cache, tmp_path):
    """After training over features, fine-tune the last encoder block end to end."""
    from safetensors.torch import load_file

    from steertime.train import train

    feats = extract_features(Cache.open(tiny_cache), tmp_path / "f")
    base = ["model.name=feat_gru", "train.batch_size=2", "model.hidden=8"]
    cfg = small_train_config(
        tiny_cache, tmp_path / "feat", *base, "train.seq_len=20", f"data.features={feats}"
    )
    first = train(cfg, progress=False)
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "ft",
        *base,
        "train.max_steps=2",
        f"train.init_from={first}",
        "optim.lr=1e-3",
        "model.encoder_cfg={finetune_blocks: 1}",
    )
    tuned = train(cfg, progress=False)
    a = load_file(first / "checkpoints" / "best" / "model.safetensors")
    b = load_file(tuned / "checkpoints" / "last" / "model.safetensors")
    last = max(int(k.split(".")[3]) for k in a if k.startswith("encoder.net._blocks."))
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    assert any(k.startswith(f"encoder.net._blocks.{last}.") for k in moved)
    assert not any(k.startswith("encoder.net._blocks.0.") or "_conv_stem" in k for k in moved)


def test_mirrored_features_are_the_mirrored_frames_features(tiny_cache, tmp_path):
    """`--flip` adds the features of every frame mirrored to a complete store (the key is
    unchanged), and data.flip over features reads them with the labels negated."""
    from steertime.train import train
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    store_path = extract_features(cache, tmp_path / "f")
    plain = FeatureStore(store_path)
    assert not plain.has_flip
    with pytest.raises(SteertimeError, match="--flip"):
        plain.read(0, 0, 4, flip=True)
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "refused",
        "model.name=feat_lstm",
        "data.flip=true",
        f"data.features={store_path}",
    )
    with pytest.raises(SteertimeError, match="mirrored features"):
        train(cfg, progress=False)

    extract_features(cache, store_path, flip=True)  # adds the mirrored half
    store = FeatureStore(store_path)
    assert store.has_flip and store.manifest["key"] == plain.manifest["key"]
    frames = cache.drives[0].read_frames(0, 4)
    enc = create_encoder("efficientnet_lite0", height=frames.shape[1], width=frames.shape[2])
    with torch.no_grad():
        want = enc.eval()(to_float(torch.from_numpy(frames[:, :, ::-1].copy()))).numpy()
    got = store.read(0, 0, 4, flip=True)
    assert np.allclose(got, want, atol=2e-2 * np.abs(want).max())
    assert not np.allclose(got, store.read(0, 0, 4), atol=1e-3)

    reader = BatchReader(cache, ["steering"], 4, 2, store)
    feats, targets, _ = reader.read([Chunk(0, 0, True, flip=False), Chunk(0, 0, True, flip=True)])
    assert np.array_equal(feats[1], got)
    assert np.allclose(targets[1], -targets[0])
    strided = reader.read([Chunk(0, 0, True, flip=True, stride=2)] * 2)[0]
    assert np.array_equal(strided[0], store.read(0, 0, 7, flip=True)[::2])

    cfg = small_train_config(
        tiny_cache,
        tmp_path / "run",
        "model.name=feat_lstm",
        "train.batch_size=2",
        "train.max_steps=3",
        "data.flip=true",
        f"data.features={store_path}",
    )
    assert (train(cfg, progress=False) / "checkpoints" / "last").exists()


def test_features_cli_takes_flip_and_encoder_settings(tiny_cache, tmp_path):
    from typer.testing import CliRunner

    from steertime.cli.app import app

    out = tmp_path / "f13"
    args = ["features", str(tiny_cache), "--out", str(out), "--flip"]
    r = CliRunner().invoke(app, [*args, "--encoder-cfg", "{grid: [1, 3]}"])
    assert r.exit_code == 0, r.output
    store = FeatureStore(out)
    assert store.has_flip and store.dim == 1280 * 3
    assert "model.encoder_cfg={grid: [1, 3]}" in r.output and "data.flip=true" in r.output
    r = CliRunner().invoke(app, [*args, "--encoder-cfg", "[1, 3]"])
    assert r.exit_code != 0 and "must be a mapping" in r.output
    r = CliRunner().invoke(app, [*args, "--encoder-cfg", "{grid: [1, 3"])
    assert r.exit_code != 0 and "is not YAML" in r.output


def test_probe_trains_the_head_over_frozen_features_then_the_fine_tune_starts_there(
    tiny_cache, tmp_path, capsys, monkeypatch
):
    """`train.probe_epochs`: the probe (OUT/probe) trains over features extracted once and
    leaves ImageNet's weights as they were; the fine-tune starts from its best weights and
    moves every MBConv block. A run stopped after its probe trained, before the fine-tune
    began, says how to go on, and started again resumes the probe instead of training it
    anew; a finished probe is reused, never trained again."""
    from safetensors.torch import load_file

    from steertime.models import create_model
    from steertime.train import probe as P
    from steertime.train import train
    from steertime.train.loop import resume_config

    cfg = small_train_config(
        tiny_cache,
        tmp_path / "ft",
        "model.name=lite_lstm",
        "model.hidden=8",
        "train.batch_size=2",
        "train.probe_epochs=1",
        "train.max_steps=2",
        "train.soup=0",
    )

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # stopped between the probe's last step and its mark
        m.setattr(P, "write_text", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False)
    probe = tmp_path / "ft" / P.PROBE
    trained = (probe / "metrics.csv").read_text()
    with pytest.raises(SteertimeError, match="without --resume"):
        resume_config(tmp_path / "ft")
    run = train(cfg, progress=False)
    assert (probe / "metrics.csv").read_text() == trained  # resumed: nothing trained again
    assert (probe / P.FINISHED).is_file() and (run / P.FEATURES / "manifest.json").is_file()
    imagenet = create_model("lite_lstm", n_outputs=2, height=66, width=200).state_dict()
    lp = load_file(probe / "checkpoints" / "best" / "model.safetensors")
    ft = load_file(run / "checkpoints" / "last" / "model.safetensors")
    enc = [k for k in lp if k.startswith("encoder.") and "running" not in k]
    assert enc and all(torch.equal(lp[k], imagenet[k]) for k in enc)  # the probe froze them
    head = [k for k in lp if k.startswith(("project.", "rnn.", "head."))]
    assert head and any(not torch.equal(lp[k], imagenet[k]) for k in head)
    moved = {k.split(".")[3] for k in enc if "_blocks." in k and not torch.equal(lp[k], ft[k])}
    assert "0" in moved and "15" in moved  # all 16 blocks fine-tuned
    assert f"train.init_from={probe} (lite_lstm)" in capsys.readouterr().err

    def never(*a, **k):
        raise AssertionError("a finished probe was trained again")

    assert P.run_probe(cfg, never, progress=False) == probe


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["model.name=cnn_lstm"], "not pretrained"),
        (["model.name=feat_lstm"], "finetune_blocks"),
        (["model.name=lite_lstm", "data.features=F"], "data.features"),
        (["model.name=lite_lstm", "train.probe_lr=0"], "train.probe_lr"),
        (["model.name=lite_lstm", "train.probe_patience=0"], "train.probe_patience must be > 0"),
        (["model.name=lite_lstm", "train.probe_epochs=-1"], "train.probe_epochs must be >= 0"),
    ],
)
def test_a_probe_that_cannot_help_is_refused_before_anything_runs(
    tiny_cache, tmp_path, overrides, says
):
    from steertime.train import train

    cfg = small_train_config(tiny_cache, tmp_path / "r", "train.probe_epochs=3", *overrides)
    with pytest.raises(SteertimeError, match=says):
        train(cfg, progress=False)
    assert not (tmp_path / "r").exists()


def test_what_needs_frames_is_left_to_the_fine_tune(tiny_cache, tmp_path):
    """Pixel augmentations and the reconstruction head need frames, so the probe (over
    features) trains without them and the fine-tune with them — not a refusal half way."""
    from steertime.train.loop import _check_config
    from steertime.train.probe import probe_config

    pixels = ["data.color=0.15", "data.brightness=0.2", "data.blur=3", "data.shift=4"]
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "r",
        "model.name=lite_lstm",
        "train.probe_epochs=5",
        "train.recon_weight=1",
        "data.faults=blackout:0.5@5",
        *pixels,
    ).validate()
    p = probe_config(cfg).validate()
    _check_config(p, 1)  # over features: would refuse any of them
    assert p.data.features == str(tmp_path / "r" / "probe_features")
    assert (p.train.recon_weight, p.data.color, p.data.faults) == (0.0, 0.0, "")
    assert p.model["encoder_cfg"]["finetune_blocks"] == 0 and p.train.epochs == 5
    assert (cfg.train.recon_weight, cfg.data.color) == (1.0, 0.15)  # the fine-tune's own
