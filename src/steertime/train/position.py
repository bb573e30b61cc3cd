"""Where a run is (`Position`, saved in the checkpoint) and when an epoch spends patience."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from steertime.train.config import LoopConfig


@dataclass
class Position:
    """Where a run is; saved in `checkpoints/last/meta.json` as `position` so a resumed run
    continues at the same step with the same running loss."""

    epoch: int = 0
    step: int = 0  # steps done in this epoch
    global_step: int = 0
    best: float = math.inf
    bad_epochs: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    done: bool = False
    best_epoch: int | None = None  # stored once an epoch improved
    ema_n: int | None = None  # stored with optim.ema
    elapsed_s: float = 0.0  # seconds trained up to the last epoch's end (see _Training.elapsed)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.loss_n)

    def judge(self, score: float, epoch: int, at_mean: bool) -> None:
        """An epoch's validation score: a new best resets patience; one no better spends
        it, unless the model still predicts the mean (`at_mean`, see `still_at_mean`)."""
        if score < self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
        elif not at_mean:
            self.bad_epochs += 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None or k not in ("best_epoch", "ema_n")}

    @classmethod
    def from_dict(cls, d: dict) -> Position:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def loss_is_share(t: LoopConfig, autoregressive: bool, balanced: bool = False) -> bool:
    """Whether the training loss is a share of the label variance (1 = predicting the
    mean): only the plain MSE objective over normalised targets — not a Gaussian NLL, a
    cross-entropy over bins, the auxiliary term on top, Komanda's sum of three MSEs, nor
    frames weighted by their label's rarity (`data.balance`: the mean's loss exceeds 1)."""
    return not (t.spread or t.bins or t.aux_leads or autoregressive or balanced)


# An epoch whose training loss is still at predict-the-mean's has not started to learn
# (the default init spends its first ~100 steps there, longer with short windows): its
# validation score ranks nothing, so it does not use up `train.patience`. A loss of twice
# that is not "not yet learning" but diverging, and spends patience as ever.
STILL_AT_MEAN = (0.9, 2.0)


def still_at_mean(share: bool, train_loss: float) -> bool:
    """True for an epoch whose mean training loss, a share of the label variance
    (`loss_is_share`), says the model still predicts the mean."""
    return share and STILL_AT_MEAN[0] <= train_loss < STILL_AT_MEAN[1]


def loss_name(t: LoopConfig) -> str:
    """What the training loss is, as the epoch line names it."""
    if t.spread:
        return "Gaussian NLL"
    if t.bins:
        return "cross-entropy over bins"
    # the auxiliary term adds its own share of the leads' variance on top
    return "1 + aux_weight = predict-the-mean" if t.aux_leads else "1 = predict-the-mean"
