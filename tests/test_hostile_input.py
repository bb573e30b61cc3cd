"""Hostile-but-realistic input and faults (issue 19): every case is refused with one line
naming the file, row or key and exit status 2, or handled and reported — never a
traceback, never a silently wrong output, never a lost checkpoint.

docs/reliability.md lists each case and the behaviour tested here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from steertime.data import Cache, PrepareConfig, ReadOptions, read_drives
from steertime.data.cache import prepare_drives
from steertime.errors import SteertimeError
from steertime.models.checkpoint import NonFiniteWeights, load_model, save_checkpoint
from steertime.stream import Predictor, StreamError
from steertime.stream.run import load_source, predict_drives
from steertime.train import TrainConfig, TrainingDiverged, apply_overrides, load_config, train
from steertime.train.loop import resume_config
from steertime.train.runfolder import run_lock
from tests.conftest import make_run, small_train_config, tree_digest, write_video
from tests.test_formats_written import write_generic_images, write_tub


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run `steertime ARGS` in this process through the real entry point: (rc, stderr)."""
    from steertime.cli import main

    argv = sys.argv
    sys.argv = ["steertime", *map(str, args)]
    try:
        main()
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return rc, capsys.readouterr().err


def one_line_error(capsys, *args: str, names: str) -> str:
    """Assert `steertime ARGS` fails with rc 2 and one `error:` line naming `names`
    (progress lines before it are allowed; a traceback is not)."""
    rc, err = cli(capsys, *args)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2, err
    assert "Traceback" not in err and len(errors) == 1, err
    assert err.strip().splitlines()[-1] == errors[0], err
    assert names in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory) -> Path:
    """One small finished run (1 epoch) to resume, tamper with and predict from."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    train(small_train_config(tiny_cache, out, "train.threads=1"), progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- 1. non-finite weights are never checkpointed, never used -------------------------


def test_huge_lr_stops_before_nan_weights_are_saved(tiny_cache, tmp_path):
    cfg = small_train_config(tiny_cache, tmp_path / "r", "train.threads=1", "optim.lr=1e30")
    with pytest.raises(TrainingDiverged, match="weights became NaN/inf"):
        train(cfg, progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_nan_model_is_not_written_and_previous_checkpoint_stays(tmp_path):
    run = make_run(tmp_path, "pilotnet")
    best = run / "checkpoints" / "best"
    before = tree_digest(best)
    model, meta = load_model(run)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteWeights, match="previous checkpoint is intact"):
        save_checkpoint(best, model, meta.raw)
    assert tree_digest(best) == before


def _nan_weights(run: Path) -> Path:
    f = run / "checkpoints" / "best" / "model.safetensors"
    w = load_file(f)
    k = next(iter(w))
    w[k] = torch.full_like(w[k], float("nan"))
    save_file(w, f)
    return run


def _meta_edit(run: Path, **changes) -> Path:
    f = run / "checkpoints" / "best" / "meta.json"
    meta = json.loads(f.read_text())
    meta.update(changes)
    f.write_text(json.dumps(meta))
    return run


def _layout_nan(run: Path) -> Path:
    meta = json.loads((run / "checkpoints" / "best" / "meta.json").read_text())
    meta["layout"]["std"][0] = float("nan")
    return _meta_edit(run, layout=meta["layout"])


def _truncate(run: Path) -> Path:
    f = run / "checkpoints" / "best" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:500])
    return run


def _drop_key(run: Path) -> Path:
    f = run / "checkpoints" / "best" / "model.safetensors"
    w = load_file(f)
    w.pop(next(iter(w)))
    save_file(w, f)
    return run


def _wrong_shape(run: Path) -> Path:
    f = run / "checkpoints" / "best" / "model.safetensors"
    w = load_file(f)
    k = next(iter(w))
    w[k] = torch.zeros(3, 1)
    save_file(w, f)
    return run


TAMPERED = {
    "nan weights": (_nan_weights, "NaN/inf"),
    "nan layout": (_layout_nan, "key 'layout'"),
    "bad json": (lambda r: (r / "checkpoints/best/meta.json").write_text("{oops") and r, "JSON"),
    "truncated safetensors": (_truncate, "model.safetensors"),
    "missing key": (_drop_key, "does not fit the model"),
    "wrong shape": (_wrong_shape, "does not fit the model"),
    "source_size 0x0": (lambda r: _meta_edit(r, source_size=[0, 0]), "source_size"),
    "layout not a dict": (lambda r: _meta_edit(r, layout=[1, 2]), "key 'layout'"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_run_refused_by_predict(capsys, tmp_path, real_frames_dir, case):
    tamper, names = TAMPERED[case]
    run = make_run(tmp_path, "pilotnet")
    tamper(run)
    line = one_line_error(
        capsys, "predict", run, real_frames_dir, "--out", tmp_path / "p.csv", names=names
    )
    assert "checkpoints/best" in line  # the file is named
    assert not (tmp_path / "p.csv").exists()


def test_nan_run_refused_by_export_and_evaluate(capsys, tmp_path, tiny_cache):
    run = _nan_weights(make_run(tmp_path, "pilotnet"))
    one_line_error(capsys, "export", run, names="NaN/inf")
    one_line_error(
        capsys, "evaluate", run, "--data", tiny_cache, "--out", tmp_path / "e", names="NaN/inf"
    )
    assert not (tmp_path / "e").exists()  # refused before any output folder is made


@pytest.fixture(scope="module")
def real_frames_dir(tmp_path_factory, shared_data) -> Path:
    """A 12-frame generic image log of real 320x160 simulator frames (what make_run's
    source_size says)."""
    root = tmp_path_factory.mktemp("frames")
    imgs = sorted((shared_data / "udacity_sim_track1" / "IMG").glob("center_*.jpg"))[:12]
    (root / "img").mkdir()
    for k, p in enumerate(imgs):
        shutil.copy(p, root / "img" / f"{k:04d}.jpg")
    names = [f"{k:04d}.jpg" for k in range(len(imgs))]
    pd.DataFrame({"ms": np.arange(len(imgs)) * 100, "file": names, "deg": 0.0}).to_csv(
        root / "log.csv", index=False
    )
    m = {
        "csv": "log.csv",
        "frames": "img",
        "time": {"column": "ms", "unit": "ms"},
        "frame": {"column": "file"},
        "signals": {"steering": {"column": "deg", "unit": "deg"}},
    }
    (root / "steertime.yaml").write_text(yaml.safe_dump(m))
    return root


# --- 2. resume: changed config or data refused; more epochs allowed --------------------


@pytest.mark.parametrize(
    "args, names",
    [
        (["--lr", "0.5"], "optim.lr"),
        (["--model", "pilotnet"], "model.name"),
        (["--seq-len", "7"], "train.seq_len"),
        (["--set", "model.hidden=32"], "model.hidden"),
    ],
)
def test_resume_refuses_changed_config(capsys, trained, tmp_path, args, names):
    run = _copy(trained, tmp_path / "run")
    before = tree_digest(run)
    one_line_error(capsys, "train", "--out", run, "--resume", *args, names=names)
    assert tree_digest(run) == before


def test_resume_refuses_changed_data(capsys, trained, tiny_cache, tmp_path):
    run = _copy(trained, tmp_path / "run")
    cache = _copy(tiny_cache, tmp_path / "cache")
    mf = cache / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest["content_hash"] = "0" * 32  # as after `prepare --overwrite` from other data
    mf.write_text(json.dumps(manifest))
    one_line_error(capsys, "train", "--out", run, "--resume", "--data", cache, names="content hash")


def test_resume_with_more_epochs_is_allowed(capsys, trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    rc, err = cli(capsys, "train", "--out", run, "--resume", "--epochs", "2")
    assert rc == 0, err
    assert load_config(run / "config.yaml").train.epochs == 2
    rows = pd.read_csv(run / "metrics.csv")
    assert list(rows["epoch"]) == [0, 1]
    # seconds trained carry over the resume: epoch 1 counts epoch 0's too
    assert rows["elapsed_s"].iloc[1] > rows["elapsed_s"].iloc[0] > 0
    cfg, safe = resume_config(run, ["train.epochs=3"])
    assert safe == ["train.epochs: 2 -> 3"] and cfg.train.epochs == 3


# --- the config: one validate() up front, typed YAML, list overrides -------------------

REFUSED = [
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("optim.lr=inf", "optim.lr"),
    ("optim.lr=nan", "optim.lr"),
    ("train.seq_len=0", "train.seq_len"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.hidden=0", "model.hidden"),
    ("model.dropout=1", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("model.weight_drop=1", "model.weight_drop"),
    ("train.threads=-1", "train.threads"),
    ("train.epochs=0", "train.epochs"),
    ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("optim.schedule=linear", "optim.schedule"),
    ("train.device=tpu", "train.device"),
    ("optim.clip_norm=-1", "optim.clip_norm"),
    ("optim.warmup_steps=-5", "optim.warmup_steps"),
    ("data.weights=1,2", "data.weights"),  # two weights, one output
]


@pytest.mark.parametrize("pair, key", REFUSED)
def test_config_values_refused_before_anything_is_opened(tmp_path, pair, key):
    cfg = apply_overrides(TrainConfig(), [pair])
    cfg.data.cache, cfg.out = str(tmp_path / "no-such-cache"), str(tmp_path / "run")
    with pytest.raises(SteertimeError, match=f"^{key} must be"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # nothing written, so a retry is not blocked


def test_config_refusal_from_the_cli(capsys, tiny_cache, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", tiny_cache, "--out", out]
    one_line_error(capsys, *args, "--set", "train.checkpoint_every=0", names="checkpoint_every")
    one_line_error(capsys, *args, "--epochs", "0", names="train.epochs")
    assert not out.exists()


def test_weights_list_from_the_cli():
    cfg = apply_overrides(TrainConfig(), ["data.outputs=steering,speed", "data.weights=1,2"])
    assert cfg.data.weights == [1.0, 2.0]
    cfg.validate()


def test_yaml_values_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "optim:\n  lr: 1e-3\ntrain:\n  epochs: 3.0\nmodel:\n  name: cnn_lstm\n  hidden: 8\n"
    )
    cfg = load_config(f)
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    cfg.validate()
    for text, key in [
        ("train:\n  epochs: ten\n", "train.epochs"),
        ("optim:\n  lr: [1]\n", "optim.lr"),
        ("data:\n  flip: maybe\n", "data.flip"),
        ("model:\n  name: cnn_lstm\n  hidden: big\n", "model.hidden"),
        ("train: 5\n", "train"),
    ]:
        f.write_text(text)
        with pytest.raises(SteertimeError, match=rf"c\.yaml: .*{key}"):
            load_config(f)


# --- 3. what used to be a traceback: one line, rc 2 ------------------------------------


def _non_utf8_sim(root: Path, shared: Path) -> tuple[list, str]:
    src = shared / "udacity_sim_track1"
    (root / "sim").mkdir()
    (root / "sim" / "IMG").symlink_to(src / "IMG")
    lines = (src / "driving_log.csv").read_bytes().splitlines(keepends=True)[:10]
    lines[5] = lines[5].replace(b",", b"\xe9,", 1)
    (root / "sim" / "driving_log.csv").write_bytes(b"".join(lines))
    return ["inspect", root / "sim"], "driving_log.csv: row 6"


def _tub_edit(root: Path, line: int, value) -> Path:
    write_tub(root / "tub", 10)
    mf = root / "tub" / "data" / "manifest.json"
    lines = mf.read_text().splitlines()
    lines[line] = json.dumps(value)
    mf.write_text("\n".join(lines) + "\n")
    return root / "tub"


def _tub_record_not_object(root: Path, shared: Path) -> tuple[list, str]:
    write_tub(root / "tub", 10)
    cat = root / "tub" / "data" / "catalog_0.catalog"
    lines = cat.read_text().splitlines()
    lines[3] = "[1, 2, 3]"
    cat.write_text("\n".join(lines) + "\n")
    return ["inspect", root / "tub"], "catalog_0.catalog: row 4"


def _tub_deleted_not_list(root: Path, shared: Path) -> tuple[list, str]:
    meta = {"paths": ["catalog_0.catalog"], "current_index": 10, "deleted_indexes": 5}
    return ["inspect", _tub_edit(root, 4, meta)], "field 'deleted_indexes'"


def _tub_catalog_line_not_object(root: Path, shared: Path) -> tuple[list, str]:
    return ["inspect", _tub_edit(root, 4, ["catalog_0.catalog"])], "manifest.json: row 5"


def _video(root: Path, content: bytes) -> Path:
    (root / "v.mp4").write_bytes(content)
    return root / "v.mp4"


def _predict_on(root: Path, source: Path) -> list:
    return ["predict", make_run(root, "pilotnet"), source, "--out", root / "p.csv"]


def _empty_interpolated(root: Path, shared: Path) -> tuple[list, str]:
    (root / "real").mkdir()
    (root / "real" / "interpolated.csv").write_text("")
    return ["inspect", root / "real", "--format", "udacity_real"], "interpolated.csv"


CASES = {
    "non-UTF-8 driving_log.csv": _non_utf8_sim,
    "zero-byte video in predict": lambda r, s: (_predict_on(r, _video(r, b"")), "v.mp4"),
    "garbage video in predict": lambda r, s: (_predict_on(r, _video(r, b"x" * 999)), "v.mp4"),
    "tub record not a JSON object": _tub_record_not_object,
    "tub deleted_indexes not a list": _tub_deleted_not_list,
    "tub catalog line not an object": _tub_catalog_line_not_object,
    "empty interpolated.csv": _empty_interpolated,
    "config of the wrong type": lambda r, s: (
        (r / "c.yaml").write_text("optim:\n  lr: fast\n")
        and None
        or ["train", "--config", r / "c.yaml", "--data", r, "--out", r / "run"],
        "optim.lr",
    ),
    "prepare --fps 0": lambda r, s: (["prepare", r, "--out", r / "c", "--fps", "0"], "fps"),
    "prepare --fps nan": lambda r, s: (["prepare", r, "--out", r / "c", "--fps", "nan"], "fps"),
    "prepare --size 100000x100000": lambda r, s: (
        ["prepare", r, "--out", r / "c", "--size", "100000x100000"],
        "100000x100000",
    ),
    "prepare --max-gap 0": lambda r, s: (
        ["prepare", r, "--out", r / "c", "--max-gap", "0"],
        "--max-gap",
    ),
    "a split with no training frames": lambda r, s: (
        write_generic_images(r / "log", 20) is None
        or ["prepare", r / "log", "--out", r / "c", "--val", "0.49", "--test", "0.49"],
        "no training frames",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_one_line_errors(capsys, tmp_path, shared_data, case):
    args, names = CASES[case](tmp_path, shared_data)
    one_line_error(capsys, *args, names=names)
    assert not list(tmp_path.glob(".c.tmp-*")) and not (tmp_path / "c").exists()


def test_full_disk_is_one_line_and_the_checkpoint_survives(capsys, trained, tmp_path, monkeypatch):
    run = _copy(trained, tmp_path / "run")
    last = run / "checkpoints" / "last"
    before = tree_digest(last)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(a[1]))

    monkeypatch.setattr("steertime.models.checkpoint.save_file", full)
    line = one_line_error(
        capsys, "train", "--out", run, "--resume", "--epochs", "2", names="no space left"
    )
    assert "intact" in line
    assert tree_digest(last) == before and not list(last.parent.glob(".last.tmp-*"))


def test_truncated_last_catalog_record_is_skipped_and_reported(tmp_path):
    write_tub(tmp_path / "tub", 12)
    cat = tmp_path / "tub" / "data" / "catalog_0.catalog"
    cat.write_bytes(cat.read_bytes()[:-25])  # a crash mid-write of the last record
    (d,) = read_drives(tmp_path / "tub")
    assert len(d) == 11
    assert any("row 12" in p and "cut short" in p for p in d.problems)
    lines = cat.read_text().splitlines()
    lines[3] = lines[3][:20]  # the same damage in the middle is an error
    cat.write_text("\n".join(lines) + "\n")
    with pytest.raises(SteertimeError, match=r"catalog_0\.catalog: row 4"):
        read_drives(tmp_path / "tub")


@pytest.mark.parametrize(
    "frame, t",
    [
        (3, 0.0),
        ([[1, 2, 3]], 0.0),
        (np.zeros((0, 0, 3), np.uint8), 0.0),
        (np.zeros((160, 320, 3), np.uint8), "0.5"),
        (np.zeros((160, 320, 3), np.uint8), None),
    ],
    ids=["int", "list", "0x0", "str-time", "None-time"],
)
def test_stream_step_refuses_bad_input(tmp_path, frame, t):
    p = Predictor.from_run(make_run(tmp_path, "pilotnet"))
    with pytest.raises(StreamError):
        p.step(frame, t)
    assert p.step(np.zeros((160, 320, 3), np.uint8), 1.0)["status"] == "ok"  # still usable


# --- 4. wrong-aspect frames: one rule in prepare and predict --------------------------


def test_wrong_aspect_frame_skipped_and_reported_by_prepare_and_predict(
    capsys, tmp_path, real_frames_dir
):
    log = _copy(real_frames_dir, tmp_path / "log")
    Image.new("RGB", (100, 100)).save(log / "img" / "0005.jpg")  # square, among 2:1 frames
    cache = prepare_drives(read_drives(log), tmp_path / "c", PrepareConfig(), source=str(log))
    assert cache.n_frames == 11
    # row 7 of log.csv (after its header) is frame 5
    assert any("0005.jpg" in p and "aspect" in p and "row 7" in p for p in cache.drives[0].problems)
    run = make_run(tmp_path, "pilotnet")
    rc, err = cli(capsys, "predict", run, log, "--out", tmp_path / "p.csv")
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "p.csv")
    assert len(df) == 12 and (df["status"] == "ok").sum() == 11
    bad = df[df["status"] == "skipped"].iloc[0]
    assert bad["row"] == 7 and "0005.jpg" in bad["error"] and "row 7" in bad["error"]


def test_absurd_label_magnitude_is_dropped_and_reported(tmp_path):
    write_generic_images(tmp_path, 12)
    df = pd.read_csv(tmp_path / "log.csv")
    df.loc[4, "deg"] = 1e308
    df.to_csv(tmp_path / "log.csv", index=False)
    (d,) = read_drives(tmp_path)
    assert len(d) == 11 and np.isfinite(np.square(d.signals["steering"])).all()
    assert any("beyond" in p and "'steering'" in p for p in d.problems)


# --- 5. atomic checkpoints recovered, stale temp folders cleaned, one trainer a run -----


def test_crash_between_renames_is_recovered_on_resume(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    ck = run / "checkpoints"
    dead = 2**22 + 12345  # above pid_max's default: no such process
    shutil.copytree(ck / "last", ck / f".last.old-{dead}")
    os.replace(ck / "last", ck / f".last.tmp-{dead}-x1")
    (ck / f".last.tmp-{dead}-x2").mkdir()  # a half-written copy: never chosen
    cfg, _ = resume_config(run)
    train(cfg, resume=True, progress=False)
    assert (ck / "last" / "meta.json").is_file()
    # no temp or .old folder survives; top/ holds the epochs a weight soup averages
    assert sorted(p.name for p in ck.iterdir()) == ["best", "last", "top"]
    assert not [p for p in (ck / "top").iterdir() if p.name.startswith(".")]


def test_killed_prepare_temp_folder_is_cleaned(tmp_path):
    write_generic_images(tmp_path / "log", 12)
    dead = 2**22 + 12345
    stale = tmp_path / f".c.tmp-{dead}-abc"
    (stale / "drives").mkdir(parents=True)
    prepare_drives(read_drives(tmp_path / "log"), tmp_path / "c", PrepareConfig())
    assert not stale.exists() and Cache.open(tmp_path / "c").n_frames == 12


def test_second_training_into_a_run_folder_is_refused(tiny_cache, tmp_path):
    with run_lock(tmp_path / "run"), pytest.raises(SteertimeError, match="another training"):
        train(small_train_config(tiny_cache, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()


# --- 6. verify a cache's content hash ----------------------------------------------------


def test_verify_finds_a_bit_flip(capsys, tmp_path):
    write_generic_images(tmp_path / "log", 12)
    prepare_drives(read_drives(tmp_path / "log"), tmp_path / "c", PrepareConfig())
    rc, err = cli(capsys, "verify", tmp_path / "c")
    assert rc == 0, err
    f = tmp_path / "c" / "drives" / "000" / "frames.npy"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 1
    f.write_bytes(bytes(raw))
    one_line_error(capsys, "verify", tmp_path / "c", names="content hash")


# --- 3. video damaged in the middle: decode past it, count every frame lost --------------


def test_video_damage_in_the_middle_counts_every_lost_frame(capsys, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    write_video(log / "v.mkv", 120, size=(160, 120))
    raw = bytearray((log / "v.mkv").read_bytes())
    rng = np.random.default_rng(0)
    a = len(raw) // 3
    raw[a : a + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (log / "v.mkv").write_bytes(bytes(raw))
    pd.DataFrame({"angle": np.zeros(120)}).to_csv(log / "s.csv", index=False)
    m = {"csv": "s.csv", "frames": "v.mkv", "fps": 30, "signals": {"steering": {"column": "angle"}}}
    (d,) = read_drives(log, "generic", ReadOptions(mapping=m))
    assert len(d) == 120  # rows after the damage keep their frames
    (note,) = [p for p in d.problems if "lost to damaged" in p]
    lost = int(note.split()[0])
    assert 0 < lost < 100
    cache = prepare_drives([d], tmp_path / "c", PrepareConfig(), source=str(log))
    assert cache.n_frames >= 120 - lost - 1  # one more may fail to decode
    dropped = [p for p in cache.drives[0].problems if p.startswith("frame dropped")]
    assert len(dropped) == 120 - cache.n_frames
    # decoding went on past the damage (the old decoder stopped there, about frame 18)
    assert cache.drives[0].rows.max() >= 118
    run = make_run(tmp_path, "pilotnet", source_size=(120, 160))

    df = predict_drives(
        Predictor.from_run(run), load_source(log, "generic", ReadOptions(mapping=m))
    )
    # after 3 s of lost frames the state starts afresh ("reset"), as after any gap
    assert len(df) == 120 and df["status"].isin(["ok", "reset"]).sum() == cache.n_frames
    assert df.loc[df["status"] == "skipped", "error"].str.contains("lost").sum() >= lost
