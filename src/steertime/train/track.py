"""A held-out recording scored after every epoch and never used to choose: time to accuracy.

`train.track=CACHE` streams each epoch's model (the one validation scores: the moving
average with `optim.ema`) over a second prepared cache, and the run's soup too, and logs
the RMSE per output as `track_rmse_*` beside `elapsed_s` (seconds since training began,
the tracking itself left out) in `metrics.csv`, `soup.json` and TensorBoard (`track/`).

Why: "how long until this model steers as well as X on frames it never saw" is a question
validation cannot answer — the kept epoch is chosen on validation, and the first epoch
that reaches X on held-out frames may come earlier or later. It is how DAWNBench times
training (seconds to a target test accuracy). What keeps it honest is that nothing reads
these scores back: the kept epoch, the soup and early stopping see validation only, so a
tracked run trains to the same weights as an untracked one (tested). Reading the curve to
pick an epoch would be choosing on the test frames; the docs say so where it is used.
"""

from __future__ import annotations

import time
from pathlib import Path

from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models import OutputLayout, SequenceModel
from steertime.train.validate import stream_metrics

SPLITS = ("all", "train", "val", "test")


class Tracker:
    """A second cache checked against the training one once, then scored on demand
    (`split` one of SPLITS, which `TrainConfig.validate` checks before anything opens)."""

    def __init__(self, path: str | Path, split: str, train_cache: Cache, layout: OutputLayout):
        self.cache = cache = Cache.open(path)
        key = f"train.track={path}"
        differ = cache.frame.differences(train_cache.frame, "training")
        if differ:
            raise SteertimeError(
                f"{key}: its frames are not prepared like the training cache's: "
                f"{', '.join(differ)}; prepare it with the same --size/--crop"
            )
        missing = [n for n in layout.names if n not in cache.signal_names()]
        if missing:
            raise SteertimeError(f"{key}: no {', '.join(missing)} to score in every drive")
        self.segments = cache.segments(None if split == "all" else split)
        if not self.segments:
            raise SteertimeError(f"{key}: split {split!r} has no frames")
        self.layout = layout
        self.seconds = 0.0  # all tracking so far, left out of the run's elapsed time

    def score(self, model: SequenceModel, device, lead: int = 0) -> dict[str, float]:
        """RMSE (and spread z90) per output on every tracked frame, keys prefixed `track_`."""
        started = time.perf_counter()
        metrics = stream_metrics(model, self.cache, self.segments, self.layout, device, None, lead)
        self.seconds += time.perf_counter() - started
        return {f"track_{k}": v for k, v in metrics.items()}
