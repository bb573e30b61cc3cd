"""How far would another calibration rule move the coverage of the 90% interval?

    python benchmarks/calibration_rules.py VAL_CACHE TEST_CACHE RUN [RUN ...]

Each RUN (trained with `train.spread=true` on VAL_CACHE) is streamed over VAL_CACHE's
validation segments and over all of TEST_CACHE. `train` calibrates the spread on the
pooled validation frames (the interval covers 90% of them); the rules below rescale it
from the validation segments one by one instead — the worst segment, their mean, their
root mean square — to see whether a rule that expects the held-out minutes to differ from
validation as much as its blocks differ from each other would cover them better.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from steertime.data import Cache
from steertime.evaluate.run import predict_on_cache
from steertime.models.layout import Z90


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("val_cache", type=Path)
    ap.add_argument("test_cache", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    a = ap.parse_args()
    val, test = Cache.open(a.val_cache), Cache.open(a.test_cache)
    for run in a.runs:
        fv, layout = predict_on_cache(run, val, "val")
        ft, _ = predict_on_cache(run, test, None)
        (m,) = fv.preds
        seg = np.asarray(fv.drive)
        print(f"{run}: {len(fv.t)} validation frames, {len(ft.t)} held-out frames")
        for name in layout.names:
            # errors in units of the calibrated spread: 1.645 is the 90% line
            zv = np.abs(fv.preds[m][name] - fv.truth[name]) / fv.spreads[m][name]
            zt = np.abs(ft.preds[m][name] - ft.truth[name]) / ft.spreads[m][name]
            per = np.array([np.quantile(zv[seg == s], 0.9) for s in dict.fromkeys(seg)])
            rules = {
                "as trained (pooled validation)": 1.0,
                "worst validation segment": per.max() / Z90,
                "mean over segments": per.mean() / Z90,
                "rms over segments": float(np.sqrt(np.mean(per**2))) / Z90,
            }
            print(f"  {name}: segments' 90% lines {np.round(np.sort(per), 2).tolist()}")
            for rule, k in rules.items():
                print(
                    f"    {rule:32s} x{k:.2f}: validation {np.mean(zv <= Z90 * k):.1%}, "
                    f"held out {np.mean(zt <= Z90 * k):.1%}"
                )


if __name__ == "__main__":
    main()
