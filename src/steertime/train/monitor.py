"""Training health: warnings with concrete advice when a run shows no learning, and (with
`train.diagnostics=true`) per-layer gradient norms, update/weight ratios and the share of
saturated activations, logged to TensorBoard.

The warnings cost nothing (they use the loss and the gradient norm the loop already has);
the per-layer figures hook into the model only when asked for.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
import torch
from torch import nn

log = logging.getLogger("steertime.train")
WINDOW = 25  # steps over which "no progress" and "mostly clipped" are judged
EVERY = 10  # steps between per-layer measurements
# The loss is the weighted MSE of outputs normalised by the training labels' std, so 1.0
# is what predicting the mean scores. After LEARN_CHECK steps a run that learns is well
# below it; one still above NOT_LEARNING has fit nothing (issue 24: a PilotNet on a real
# RC tub sat at 0.86-1.01 for nine epochs and nothing said so).
LEARN_CHECK = 300
NOT_LEARNING = 0.8
# A warm-up longer than this share of the run keeps the learning rate low for most of it
# (100 warm-up steps in a 28-step run ended at lr 2.9e-4 with a predict-the-mean model);
# it is then shortened to WARMUP_SCALED of the run.
WARMUP_MAX = 0.25
WARMUP_SCALED = 0.1


def effective_warmup(warmup: int, total_steps: int) -> tuple[int, str]:
    """The warm-up to use for a run of `total_steps`, and a warning when it was shortened."""
    if warmup <= 0 or total_steps <= 0 or warmup <= WARMUP_MAX * total_steps:
        return warmup, ""
    scaled = max(1, round(WARMUP_SCALED * total_steps))
    return scaled, (
        f"optim.warmup_steps={warmup} is longer than {WARMUP_MAX:.0%} of this run "
        f"({total_steps} steps): the learning rate would stay low for most of it. Warm-up "
        f"shortened to {scaled} steps ({WARMUP_SCALED:.0%}); train longer (train.epochs) "
        "or set optim.warmup_steps to choose yourself."
    )


def label_note(values: dict[str, np.ndarray]) -> str:
    """A hint when a label is coarse: its std spans few quantisation steps, so most of its
    variance is rounding that no model can predict."""
    notes = []
    for name, v in values.items():
        v = v[np.isfinite(v)]
        levels = np.unique(v)
        if len(levels) < 2:
            notes.append(f"{name} is constant over the training split")
            continue
        step = float(np.min(np.diff(levels)))
        std = float(v.std())
        if std < 4 * step or len(levels) <= 12:
            notes.append(
                f"{name} takes {len(levels)} distinct values, std {std:.3g} = "
                f"{std / step:.1f} quantisation steps of {step:.3g}"
            )
    return "; ".join(notes)


class TrainingMonitor:
    def __init__(self, model: nn.Module, writer, clip: float, detailed: bool) -> None:
        self.model, self.writer, self.clip, self.detailed = model, writer, clip, detailed
        self.losses: deque = deque(maxlen=WINDOW)
        self.first_mean: float | None = None
        self.n = 0
        self.clipped: deque = deque(maxlen=WINDOW)
        self.warned: set[str] = set()
        self.messages: list[str] = []
        self.saturation: dict[str, list[float]] = {}
        self.recording = True  # off while optim.sam's second pass runs at moved weights
        self._before: dict[str, torch.Tensor] = {}
        self.labels = ""  # label_note() of the training labels, for the not-learning hint
        # A Gaussian NLL (`train.spread`) or a cross-entropy over bins (`train.bins`) is
        # not a share of the label variance: the not-learning threshold does not apply.
        self.loss_not_a_share = False
        self.lr = math.nan
        if detailed:
            for name, mod in model.named_modules():
                if isinstance(mod, nn.ELU | nn.ReLU):
                    mod.register_forward_hook(self._hook(name, isinstance(mod, nn.ELU)))

    def _hook(self, name: str, elu: bool):
        def record(_mod, _inp, out: torch.Tensor) -> None:
            if not self.recording:
                return
            # ReLU: exactly 0 passes no gradient; ELU: near −1 its slope is ~0 (saturated).
            dead = (out < -0.99) if elu else (out <= 0)
            self.saturation.setdefault(name, []).append(float(dead.float().mean()))

        return record

    def warn(self, key: str, text: str) -> None:
        """Say `text` once per `key`: logged now, and kept for warnings.txt."""
        self._warn(key, text)

    def _warn(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.messages.append(text)
            log.warning(text)

    def after_backward(self, step: int, gnorm: float, lr: float) -> None:
        """Called between backward and the optimiser step."""
        self.lr = lr
        if gnorm == 0.0:
            self._warn(
                "zero",
                f"step {step}: all gradients are zero — nothing can learn. Check that "
                "the outputs depend on the inputs (frozen layers? detached graph?) and that "
                "targets vary (data.outputs, normalisation).",
            )
        self.clipped.append(self.clip != float("inf") and gnorm > self.clip)
        if len(self.clipped) == WINDOW and sum(self.clipped) > 0.8 * WINDOW:
            self._warn(
                "clip",
                f"step {step}: the gradient norm exceeded optim.clip_norm "
                f"({self.clip}) on {sum(self.clipped)} of the last {WINDOW} steps — "
                f"gradients are exploding. Lower optim.lr (now {lr:.3g}) or shorten "
                "train.seq_len.",
            )
        if self.detailed and step % EVERY == 0:
            for name, p in self.model.named_parameters():
                if p.grad is not None:
                    self.writer.add_scalar(f"grad_norm/{name}", float(p.grad.norm()), step)
            self._before = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def after_step(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        self.n += 1
        if self.n == WINDOW:
            self.first_mean = sum(self.losses) / WINDOW
        elif self.n % (2 * WINDOW) == 0 and self.first_mean is not None:
            # Batch noise hides a flat loss step to step; compare window means instead.
            now = sum(self.losses) / WINDOW
            if now >= 0.99 * self.first_mean:
                self._warn(
                    "flat",
                    f"step {step}: the loss has not moved since the first "
                    f"{WINDOW} steps (mean {self.first_mean:.4g} then, {now:.4g} now). "
                    "The learning rate may be far too low or too high, units may be dead "
                    "or saturated (run with train.diagnostics=true), or the targets may "
                    "be constant.",
                )
        if self.n == LEARN_CHECK:
            self._check_learning(step)
        if self.detailed and self._before:
            for name, p in self.model.named_parameters():
                before = self._before[name]
                ratio = float((p.detach() - before).norm() / (before.norm() + 1e-12))
                self.writer.add_scalar(f"update_ratio/{name}", ratio, step)
            for name, fr in self.saturation.items():
                self.writer.add_scalar(f"saturated/{name}", sum(fr) / len(fr), step)
            self._before, self.saturation = {}, {}

    def _check_learning(self, step: int) -> None:
        now = sum(self.losses) / len(self.losses)
        if now < NOT_LEARNING or self.loss_not_a_share:
            return
        labels = f" Labels: {self.labels}." if self.labels else ""
        self._warn(
            "not_learning",
            f"step {step}: not learning — the training loss is {now:.3g} of the label "
            f"variance (1.0 = predicting the mean) after {self.n} steps. Likely causes: "
            f"the learning rate (now {self.lr:.3g}; try optim.lr 3x higher and lower), "
            "saturated or dead units (steertime diagnose RUN --data CACHE, or "
            "train.diagnostics=true), or labels whose variance is mostly quantisation or "
            f"noise.{labels}",
        )

    def after_training(self, best_epoch: int | None, epochs: int, best: float, last: float) -> None:
        """Called once validation has scored the last epoch (epochs are counted from 0)."""
        if best_epoch is None or epochs < 4 or not math.isfinite(best):
            return
        if best_epoch < epochs // 4 and last > 1.05 * best:
            self._warn(
                "early_best",
                f"checkpoints/best is from epoch {best_epoch + 1} of {epochs} (validation "
                f"score {best:.4g}, {last:.4g} after the last epoch). An early, barely "
                "trained epoch scoring best usually means the validation split is too "
                "small to rank epochs (enlarge it: steertime split CACHE --val 0.25), or "
                "that training got worse (lower optim.lr). Compare checkpoints/best with "
                "checkpoints/last before using it: steertime evaluate RUN/checkpoints/last.",
            )
