"""Distillation: train on what trained runs predict, beside (or instead of) the raw labels.

`data.teacher=RUN[,RUN...]` streams each teacher over the training split once, before the
first step, and averages their predictions; `data.teacher_weight=w` makes every training
target `(1 - w) * label + w * teacher` (w = 1: the teachers' predictions alone).
Validation, early stopping, the soup and `evaluate` keep scoring the raw labels.

Why: on tap-like steering (an RC driver's near bang-bang thumb) a label jumps between
frames by more than any camera shows; the part no picture explains is noise the network
fits and then repeats on unseen frames. An average of runs trained on the same frames is
an estimate of what the pictures *do* explain, so training on it removes noise from the
targets, not signal — the ensemble's gain handed to one model that costs one model to run
(Hinton et al. 2015, "Distilling the knowledge in a neural network"). Teachers should be
trained on this cache's training split only: a teacher that saw the validation or test
frames carries them into the targets (a note says so when its data hash differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models.checkpoint import load_model
from steertime.stream.segments import predict_segment


@dataclass
class Teacher:
    """Each (drive, output)'s averaged teacher prediction placed on the label row it
    predicts (frame r's prediction is of the label at r + lead); NaN where no training
    frame predicts that row."""

    runs: list[str]
    weight: float
    values: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def blend(self, drive: int, name: str, labels: np.ndarray) -> np.ndarray:
        """`labels` (one drive's, possibly smoothed) with the teacher mixed in where it spoke."""
        t = self.values.get((drive, name))
        if t is None:
            return labels
        out = np.asarray(labels, np.float32).copy()
        have = ~np.isnan(t)
        out[have] = (1.0 - self.weight) * out[have] + self.weight * t[have]
        return out


def load_teacher(
    runs: list[str], weight: float, cache: Cache, outputs: list[str], lead: int
) -> Teacher:
    """Every teacher's predictions over `cache`'s training split, checked and averaged."""
    segs = cache.segments("train")
    # per drive: the predictions' sum and count on each label row (segments whose led rows
    # overlap another's are averaged, not summed)
    sums = {s.drive: np.zeros((cache.drives[s.drive].n, len(outputs))) for s in segs}
    counts = {d: np.zeros(len(v)) for d, v in sums.items()}
    teacher = Teacher(list(runs), weight)
    for run in runs:
        key = f"data.teacher={run}"
        with torch.random.fork_rng(devices=[]):  # building it draws weights: keep the seed's run
            model, meta = load_model(run)
        _check(key, meta, cache, outputs, lead)
        if meta.data_hash and meta.data_hash != cache.content_hash:
            teacher.notes.append(
                f"{key} was trained on another cache ({meta.data_path}): make sure it never "
                "saw this cache's validation or test frames"
            )
        cols = [meta.layout.index(n) for n in outputs]
        for s in segs:
            y = meta.layout.denormalize(predict_segment(model, cache, s, torch.device("cpu")))
            stop = min(s.stop + lead, len(counts[s.drive]))  # no label past the drive's end
            sums[s.drive][s.start + lead : stop] += y[: stop - s.start - lead][:, cols]
            counts[s.drive][s.start + lead : stop] += 1
    for d, total in sums.items():  # NaN on rows no training frame predicts
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (total / counts[d][:, None]).astype(np.float32)
        teacher.values |= {(d, n): mean[:, k] for k, n in enumerate(outputs)}
    return teacher


def _check(key: str, meta, cache: Cache, outputs: list[str], lead: int) -> None:
    missing = [n for n in outputs if n not in meta.layout.names]
    if missing:
        raise SteertimeError(
            f"{key}: the teacher does not predict {', '.join(missing)} "
            f"(it predicts {', '.join(meta.layout.names)})"
        )
    if meta.frame is not None and (differ := meta.frame.differences(cache.frame, "this cache")):
        raise SteertimeError(
            f"{key}: the teacher's frames were prepared differently: {', '.join(differ)}"
        )
    if meta.lead != lead:
        raise SteertimeError(
            f"{key}: the teacher was trained with data.lead={meta.lead}, this run with "
            f"data.lead={lead}: its predictions are of other frames' labels"
        )
