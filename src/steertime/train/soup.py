"""A weight soup: the K best-validated epochs of one run averaged into one model.

`train.soup=K` keeps the weights of the K best-validated epochs in `checkpoints/top/`
while training; at the end their average is validated like any epoch and replaces
`checkpoints/best` only when it validates better than the best epoch alone.

Why: on an unseen session or on later minutes the validation RMSE swings by ±0.03–0.04
from one epoch to the next, so *which* epoch is kept is largely luck, and a run that kept
an unlucky one is a worse model than its neighbours. Epochs of one run, late in a cosine
schedule, lie close enough in weight space to average (the "uniform soup" of Wortsman et
al., 2022, applied to one run's checkpoints), and their average steers like the average of
their predictions at the cost of one model per frame (docs/benchmarks.md). Comparing it
with the best epoch on validation is what keeps a soup from replacing a run whose best
epoch was the right one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from steertime.models.checkpoint import read_meta, read_tensors, save_checkpoint


class TopEpochs:
    """The K best-validated epochs' weights, one checkpoint folder each (`eNNN`)."""

    def __init__(self, folder: Path, k: int) -> None:
        self.folder, self.k = Path(folder), k
        self.kept: dict[int, float] = {}  # epoch -> validation score
        if self.folder.is_dir():  # a resumed run: what the interrupted one kept
            for f in sorted(self.folder.glob("e[0-9]*")):
                meta = read_meta(f)
                self.kept[int(meta["epoch"])] = float(meta["score"])

    def _path(self, epoch: int) -> Path:
        return self.folder / f"e{epoch:03d}"

    def offer(self, epoch: int, score: float, model: nn.Module, meta: dict) -> None:
        """Keep this epoch if it is among the K best so far; drop the one it displaces."""
        worst = max(self.kept, key=self.kept.get) if self.kept else None
        if len(self.kept) >= self.k and score >= self.kept[worst]:
            return
        save_checkpoint(self._path(epoch), model, {**meta, "epoch": epoch, "score": score})
        self.kept[epoch] = score
        if len(self.kept) > self.k:
            del self.kept[worst]
            shutil.rmtree(self._path(worst), ignore_errors=True)

    def epochs(self) -> list[int]:
        """The kept epochs, best first."""
        return sorted(self.kept, key=self.kept.get)

    def average(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor] | None:
        """The kept weights averaged (integer buffers from the best epoch); None below 2."""
        epochs = self.epochs()
        if len(epochs) < 2:
            return None
        states = [read_tensors(self._path(e) / "model.safetensors", device) for e in epochs]
        return {
            k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()
        }
