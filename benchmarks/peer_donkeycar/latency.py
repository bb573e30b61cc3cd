"""Donkeycar 5.3's own pilots, per frame, inside its own Vehicle loop, at 1 thread.

Runs in Donkeycar's venv (TensorFlow 2.15; see run.py), called by
`benchmarks/bench_donkeycar.py`:

    /tmp/dkvenv/bin/python benchmarks/peer_donkeycar/latency.py \\
        --tub ../shared/data/donkey_rc_tub --models rnn,linear --frames 400 \\
        --out /tmp/dk_latency.json [--weights rnn=x.h5]

A camera part hands out the tub's frames (decoded beforehand, as a camera part delivers
arrays), the pilot is `get_model_by_type(model, cfg)` with Donkeycar's defaults
(`cfg_complete.py`: 120x160, `rnn` over SEQUENCE_LENGTH=3 frames), added with
`run_condition='run_pilot'` as manage.py adds it, so `KerasPilot.run` is what runs. The
per-frame cost is what Donkeycar's own `PartProfiler` records for the pilot. Without
trained weights the model is Donkeycar's freshly built one: the same layers, so the same
arithmetic per frame as a trained one.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tub", type=Path, required=True)
    ap.add_argument("--models", default="rnn,linear")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--weights", default="", help="model=path.h5,... (optional)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import tensorflow as tf

    # One thread, like steertime's step: the car's CPU is shared with the camera and the
    # web server, and on this 2-core machine with the training runs.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    import donkeycar as dk
    from donkeycar.parts.tub_v2 import Tub
    from donkeycar.utils import get_model_by_type, load_image
    from donkeycar.vehicle import Vehicle

    cfg = dk.load_config(str(Path(dk.__file__).parent / "templates" / "cfg_complete.py"))
    tub = Tub(str(a.tub / "data"), read_only=True)
    recs = [r for _, r in zip(range(a.frames), tub, strict=False)]
    frames = [
        load_image(os.path.join(tub.images_base_path, r["cam/image_array"]), cfg) for r in recs
    ]
    tub.close()
    weights = dict(kv.split("=", 1) for kv in a.weights.split(",") if kv)

    class Camera:
        def __init__(self) -> None:
            self.i = 0

        def run(self):
            f = frames[self.i % len(frames)]
            self.i += 1
            return f

    result = {"tensorflow": tf.__version__, "donkeycar": dk.__version__, "threads": 1}
    for name in a.models.split(","):
        kl = get_model_by_type(name, cfg)
        if name in weights:
            kl.load(weights[name])
        v = Vehicle()
        v.mem.put(["run_pilot"], [True])
        v.add(Camera(), outputs=["cam/image_array"])
        v.add(
            kl,
            inputs=["cam/image_array"],
            outputs=["pilot/angle", "pilot/throttle"],
            run_condition="run_pilot",
        )
        v.start(rate_hz=10_000, max_loop_count=len(frames))
        times = np.array(v.profiler.records[kl]["times"][20:])  # after TF's first calls
        result[name] = {
            "weights": weights.get(name, "untrained (Donkeycar's freshly built model)"),
            "frames": len(times),
            "ms_median": 1000 * float(np.median(times)),
            "ms_p90": 1000 * float(np.percentile(times, 90)),
        }
        print(name, result[name], flush=True)
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
