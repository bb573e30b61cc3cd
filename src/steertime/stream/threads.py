"""How many CPU threads one inference step may use.

At batch 1 a step is a few small convolutions and one recurrent cell: too little work to
split across threads. With two threads each operator waits for both cores, so when any
other process holds one of them (a car's computer is never idle) a step stalls on the
scheduler: measured 352 ms with two threads against 22 ms with one, on two cores shared
with a CPU-bound neighbour (docs/benchmarks.md, "Streaming latency under load"). One
intra-op thread is therefore the default for streaming, in PyTorch and onnxruntime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DEFAULT_THREADS = 1  # batch-1 streaming; 0 means "the backend's own default"


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` intra-op threads, then restore the previous setting.

    Restoring keeps the setting local: a process that evaluates and then trains (the demo,
    the tests) must not train on one thread. Switching to one thread and back costs a few
    µs (measured with a 64x64 matmul between the switches), against a ~1–2 ms step, so it
    can wrap every step.
    """
    if not threads or threads < 0:
        yield
        return
    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
