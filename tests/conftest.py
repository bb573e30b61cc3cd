from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steertime.data import FrameSpec
from steertime.models import OutputLayout
from steertime.models.checkpoint import save_untrained_run

# Wide terminal so rich does not wrap the lines tests look for.
os.environ.setdefault("COLUMNS", "200")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings in ../shared/data. CI must have them; elsewhere skip, saying why."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data missing at {SHARED}")
        pytest.skip(f"real data not found at {SHARED} (CI provides it)")
    return SHARED


def bench_module(name: str):
    """A script of benchmarks/ imported as a module (they import their siblings by name)."""
    import importlib
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def tree_digest(root: Path) -> str:
    """Hash of every file name, size and mtime under root: detects any write."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def write_images(folder: Path, n: int, size=(64, 48), seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        name = f"{i:04d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def write_video(path: Path, n: int, size=(64, 48), fps: int = 30) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            arr = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="session")
def tiny_cache(shared_data, tmp_path_factory) -> Path:
    """A 400-frame real clip of udacity_sim_track1, prepared at 66x200 (tail split, guard 10)."""
    from steertime.data import PrepareConfig, SplitConfig, read_drives
    from steertime.data.cache import prepare_drives

    (d,) = read_drives(shared_data / "udacity_sim_track1")
    clip = d.slice(np.arange(400, 800), "clip")
    out = tmp_path_factory.mktemp("cache") / "tiny"
    cfg = PrepareConfig(split=SplitConfig("tail", 0.15, 0.15, guard=10))
    prepare_drives([clip], out, cfg)
    return out


SMALL_TRAIN = [
    "train.threads=2",
    "train.batch_size=4",
    "train.seq_len=5",
    "train.epochs=1",
    "optim.warmup_steps=2",
    "model.hidden=16",
    "model.feat_dim=16",
]


@pytest.fixture(scope="session")
def spread_run(tiny_cache, tmp_path_factory) -> Path:
    """A `cnn_lstm` trained with `train.spread` on steering and speed (2 epochs)."""
    from steertime.train import train

    out = tmp_path_factory.mktemp("spread") / "run"
    cfg = small_train_config(
        tiny_cache, out, "model.name=cnn_lstm", "train.spread=true", "train.epochs=2"
    )
    cfg.data.outputs = ["steering", "speed"]
    return train(cfg, progress=False)


def small_train_config(cache: Path, out: Path, *overrides: str):
    """A TrainConfig small enough for a test: tiny model, short chunks; later overrides win."""
    from steertime.train import TrainConfig, apply_overrides

    cfg = apply_overrides(TrainConfig(), [*SMALL_TRAIN, *overrides])
    cfg.data.cache, cfg.out = str(cache), str(out)
    return cfg


def interrupt_on_call(n: int):
    """A progress callback that raises KeyboardInterrupt (Ctrl-C) on its n-th call."""
    calls = {"n": 0}

    def progress(_advance: int) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    return progress


# An untrained run: enough for exactness, parity and plumbing tests.
SPEC = FrameSpec(66, 200, crop_top=60, crop_bottom=20)


LAYOUT = OutputLayout(
    ["steering", "speed"],
    [0.05, 10.0],
    [0.3, 2.0],
    units=[
        {"name": "deg", "to_radians": np.pi / 180, "angle_of": "steering_wheel"},
        {"name": "m/s", "to_radians": None, "angle_of": None},
    ],
)


def make_run(root: Path, name: str, source_size=(160, 320), spec=SPEC) -> Path:
    """A run folder holding a randomly initialised model (enough for exactness tests)."""
    return save_untrained_run(root / f"run_{name}", name, LAYOUT, spec.to_dict(), source_size)


def batched_with_gaps(p, frames: list[np.ndarray], gaps: slice) -> np.ndarray:
    """A predictor's model over the whole sequence at once, the frames in `gaps` blanked
    and flagged missing -> (T, K) physical outputs (what streaming with step(None) gives)."""
    import torch

    x = torch.from_numpy(np.stack([SPEC.apply(f) for f in frames]))[None]
    miss = torch.zeros(1, len(frames), dtype=torch.bool)
    miss[0, gaps] = True
    x[0, gaps] = 0
    with torch.no_grad():
        y, _ = p.model(x, None, miss)
    return p.layout.denormalize(y[0].numpy())
