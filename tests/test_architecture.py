"""The layering of docs/architecture.md, enforced: car-side code never imports training,
and a checkpoint's meta.json is parsed in one place (`RunMeta`)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from steertime.data.preprocess import FrameSpec
from steertime.errors import SteertimeError
from steertime.models import OutputLayout
from steertime.models.checkpoint import (
    RunMeta,
    load_model,
    read_meta,
    read_run_meta,
    save_untrained_run,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "steertime"

# package -> the steertime packages it must never import (at any depth, lazily or not)
FORBIDDEN = {
    "data": (
        "steertime.models",
        "steertime.train",
        "steertime.stream",
        "steertime.evaluate",
        "steertime.sim",
    ),
    "models": ("steertime.train", "steertime.stream", "steertime.evaluate", "steertime.sim"),
    "stream": ("steertime.train", "steertime.evaluate", "steertime.sim"),
    "evaluate": ("steertime.train", "steertime.sim"),
    "sim": ("steertime.train", "steertime.evaluate"),
    "diagnostics": ("steertime.train",),
    "integrations": ("steertime.train", "steertime.evaluate", "steertime.sim", "steertime.cli"),
}
# The one deliberate exception (docs/architecture.md): the features store builds the
# frozen encoder whose outputs it stores.
ALLOWED = {("data/features.py", "steertime.models")}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, top-level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package):
    bad = []
    for f in sorted((SRC / package).rglob("*.py")):
        for mod in _imports(f):
            for banned in FORBIDDEN[package]:
                if (str(f.relative_to(SRC)), banned) in ALLOWED:
                    continue
                if mod == banned or mod.startswith(banned + "."):
                    bad.append(f"{f.relative_to(SRC)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_model_registry_imports_no_model_file():
    """timm's way: the package imports the model files, the registry imports none."""
    mods = _imports(SRC / "models" / "registry.py")
    assert not [m for m in mods if m.startswith("steertime.models")], mods


# --- RunMeta ------------------------------------------------------------------------------

LAYOUT = {
    "names": ["steering", "speed"],
    "mean": [0.0, 10.0],
    "std": [1.0, 2.0],
    "units": [{"name": "deg", "to_radians": 0.0174533}, {"name": "m/s"}],
    "weights": [1.0, 1.0],
}
FRAME = {
    "height": 66,
    "width": 200,
    "crop_top": 60,
    "crop_bottom": 20,
    "color": "RGB",
    "resample": "bilinear",
}


def _stored(**over) -> dict:
    """A meta.json as `train` writes it (best checkpoint)."""
    meta = {
        "model": "cnn_lstm",
        "model_config": {"n_outputs": 2, "height": 66, "width": 200},
        "layout": LAYOUT,
        "code_version": "0.1.0",
        "frame": FRAME,
        "source_size": [160, 320],
        "data_hash": "abc123",
        "data_path": "/tmp/cache",
        "lead_frames": 2,
        "epoch": 3,
        "val": {"rmse_steering": 0.5},
        "score": 0.5,
    }
    meta.update(over)
    return meta


def test_run_meta_parses_every_field():
    m = RunMeta.parse(_stored())
    assert m.model == "cnn_lstm"
    assert m.model_config == {"n_outputs": 2, "height": 66, "width": 200}
    assert m.layout == OutputLayout.from_dict(LAYOUT)
    assert m.frame == FrameSpec.from_dict(FRAME)
    assert m.source_size == (160, 320)
    assert (m.lead, m.epoch, m.score) == (2, 3, 0.5)
    assert (m.data_hash, m.code_version) == ("abc123", "0.1.0")
    assert m["val"] == {"rmse_steering": 0.5} and m.get("missing", 7) == 7  # stored keys


def test_run_meta_of_an_older_or_untrained_checkpoint():
    """Keys a checkpoint may lack take their defaults: no lead, no source size, no epoch."""
    old = _stored()
    for k in ("lead_frames", "source_size", "epoch", "score", "data_hash", "val"):
        old.pop(k)
    m = RunMeta.parse(old)
    assert (m.lead, m.source_size, m.epoch, m.score, m.data_hash) == (0, None, None, None, None)
    assert RunMeta.parse(_stored(source_size=None, lead_frames=0)).source_size is None


def test_run_meta_refuses_a_meta_without_model_or_layout():
    for key in ("model", "model_config", "layout"):
        bad = _stored()
        bad.pop(key)
        with pytest.raises(SteertimeError, match=key):
            RunMeta.parse(bad)
    with pytest.raises(SteertimeError, match="frame"):
        RunMeta.parse(_stored(frame=None)).require_frame()


def test_run_meta_round_trips_a_saved_run(tmp_path):
    layout = OutputLayout.from_dict(LAYOUT)
    run = save_untrained_run(tmp_path / "run", "pilotnet", layout, FRAME, source_size=(160, 320))
    best = run / "checkpoints" / "best"
    stored = json.loads((best / "meta.json").read_text())
    assert read_meta(best) == stored  # the on-disk dict is unchanged
    m = read_run_meta(run)
    assert m == RunMeta.parse(stored) and m.raw == stored
    assert (m.model, m.layout, m.frame, m.source_size) == (
        "pilotnet",
        layout,
        FrameSpec.from_dict(FRAME),
        (160, 320),
    )
    model, meta = load_model(run)
    assert meta == m and model.model_name == "pilotnet"
    assert isinstance(model(torch.zeros(1, 1, 66, 200, 3, dtype=torch.uint8))[0], torch.Tensor)


def test_training_position_round_trips_the_stored_dict():
    """`Position` reads and writes `meta["position"]` exactly as the dict it replaced."""
    from steertime.train.position import Position

    fresh = Position().to_dict()
    assert fresh == {
        "epoch": 0,
        "step": 0,
        "global_step": 0,
        "best": float("inf"),
        "bad_epochs": 0,
        "loss_sum": 0.0,
        "loss_n": 0,
        "done": False,
        "elapsed_s": 0.0,
    }
    old = {**fresh, "epoch": 2, "best": 0.4, "best_epoch": 1, "ema_n": 30, "loss_n": 5}
    assert Position.from_dict(old).to_dict() == old
    # a checkpoint written before elapsed_s existed resumes from 0 s
    del old["elapsed_s"]
    assert Position.from_dict(old).elapsed_s == 0.0
    assert Position.from_dict(json.loads(json.dumps(fresh))).best == float("inf")
