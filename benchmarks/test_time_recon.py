"""Test-time training: adapt a reconstruction run's encoder to unlabelled held-out frames.

A run trained with `train.recon_weight` has a head that redraws each frame's thumbnail
from the encoder's features. Test-time training (Sun et al. 2020) takes a few Adam steps
on that loss over frames of the new session — no labels needed, the frames a car records
on a new day — with the memory and the steering head frozen, then scores the adapted
run. It is transductive (the frames adapted on are the frames scored), so it measures
whether a day's shift is there to close; it is not a recipe:

    python benchmarks/test_time_recon.py RUN --data CACHE --split all --steps 50 --lr 2e-5 \
        --out ADAPTED
    steertime evaluate ADAPTED --data CACHE --split all --compare RUN --out EVAL

The adapted run is a copy of RUN with its best checkpoint's weights replaced (written to
a temporary folder, then renamed); RUN is never modified.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from steertime.data.cache import Cache
from steertime.errors import SteertimeError
from steertime.models.checkpoint import load_model
from steertime.train.step import StepLoss


def held_out_frames(cache: Cache, split: str) -> list[np.ndarray]:
    """The frames of `split` ('all': every drive), one (N, H, W, 3) array per segment."""
    if split == "all":
        return [d.frames_mmap() for d in cache.drives]
    segs = cache.segments(split)
    if not segs:
        raise SteertimeError(f"{cache.path}: split {split!r} is empty")
    return [cache.drives[s.drive].frames_mmap()[s.start : s.stop] for s in segs]


def adapt(
    run: Path, parts: list[np.ndarray], steps: int, lr: float, seq_len: int = 10, batch: int = 16
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Adam on the reconstruction loss over random `seq_len`-frame windows of `parts`,
    encoder and projection only; returns the new state dict and the loss per step."""
    model, _ = load_model(run)
    if model.recon_head is None or model.config.recon_memory:
        raise SteertimeError(f"{run}: not trained with train.recon_weight (lead 0)")
    # the head's size alone cannot say rows x columns: the run's config does
    grid = tuple(yaml.safe_load((run / "config.yaml").read_text())["train"]["recon_grid"])
    loss_of = StepLoss(model, [1.0], 0, 0.5, skip=0, recon=(1.0, grid, 0))
    params = [*model.encoder.parameters(), *model.project.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    parts = [p for p in parts if len(p) > seq_len]
    if not parts:
        raise SteertimeError(f"no held-out segment is longer than {seq_len} frames")
    sizes = np.array([len(p) - seq_len for p in parts], dtype=np.float64)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        which = rng.choice(len(parts), size=batch, p=sizes / sizes.sum())
        starts = [rng.integers(0, len(parts[k]) - seq_len) for k in which]
        x = torch.from_numpy(
            np.stack([parts[k][i : i + seq_len] for k, i in zip(which, starts, strict=True)])
        )  # (B, T, H, W, 3)
        feats, _ = model.encode(x, model.init_state(batch))  # (B, T, F)
        loss = loss_of.recon_loss(feats, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="prepared cache of held-out frames")
    ap.add_argument("--split", default="test", help="which frames to adapt on ('all': every one)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.out.exists():
        raise SystemExit(f"{a.out} exists; choose another --out")
    cache = Cache.open(a.data)
    state, losses = adapt(a.run, held_out_frames(cache, a.split), a.steps, a.lr)
    tmp = Path(tempfile.mkdtemp(prefix=".adapt-", dir=a.out.parent))
    shutil.copytree(a.run, tmp / "run", ignore=shutil.ignore_patterns("tb", "members"))
    save_file(state, str(tmp / "run" / "checkpoints" / "best" / "model.safetensors"))
    (tmp / "run").rename(a.out)
    tmp.rmdir()
    print(f"reconstruction loss {losses[0]:.4f} -> {np.mean(losses[-10:]):.4f}; wrote {a.out}")


if __name__ == "__main__":
    main()
