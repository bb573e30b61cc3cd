"""`steertime diagnose`: gradient flow through time per recurrent type, before and after
training, as a table, a log-scale plot and JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steertime.atomic import write_json
from steertime.data import Cache
from steertime.diagnostics.gradflow import gradient_through_time, memory_horizon
from steertime.models import create_model, model_config
from steertime.models.checkpoint import load_model


def diagnose(
    cache: Cache,
    run: Path | None,
    model: str = "cnn_rnn",
    length: int = 50,
    n_seq: int = 8,
    out: Path | None = None,
) -> dict:
    """Curves for fresh rnn/gru/lstm cores, a 31-frame temporal convolution and 31-frame
    attention (before training) and for the run's model (after training) and the same
    architecture freshly initialised."""
    curves: dict[str, np.ndarray] = {}
    spec = {"height": cache.frame.height, "width": cache.frame.width}
    windowed = (("tcn", {"layers": 4}), ("attn", {"layers": 2}))
    for cell, kw in (("rnn", {}), ("gru", {}), ("lstm", {}), *windowed):
        torch.manual_seed(0)
        m = create_model(model, rnn=cell, n_outputs=1, **kw, **spec)
        curves[f"{cell} (untrained)"] = gradient_through_time(m, cache, length, n_seq)
    if run is not None:
        trained, meta = load_model(run)
        name = _described(meta.model, meta.model_config)
        curves[f"{name} (trained run)"] = gradient_through_time(trained, cache, length, n_seq)
        torch.manual_seed(0)
        fresh = create_model(meta.model, **meta.model_config)
        curves[f"{name} (same, untrained)"] = gradient_through_time(fresh, cache, length, n_seq)
    result = {
        name: {"horizon_steps": memory_horizon(c), "norms": c.tolist()}
        for name, c in curves.items()
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "gradient_flow.json", result)
        plot(curves, out / "gradient_flow.png")
    return result


def _described(model: str, config: dict) -> str:
    """The registered name, and the core when a run changed it (`--set model.rnn=tcn`)."""
    rnn = config.get("rnn")
    default = getattr(model_config(model), "rnn", None)
    return f"{model} (rnn={rnn})" if rnn is not None and rnn != default else model


def plot(curves: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from steertime.atomic import atomic_file

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, c in curves.items():
        back = np.arange(len(c))[::-1]  # steps before the loss
        ax.semilogy(back, np.maximum(c, 1e-12), label=f"{name}, horizon {memory_horizon(c)}")
    ax.axhline(1e-3 * max(c[-1] for c in curves.values()), color="grey", ls=":", lw=1)
    ax.set_xlabel("steps back from the loss (t = T − k)")
    ax.set_ylabel("‖∂loss(T)/∂h_t‖  (tcn, attn: ‖∂loss(T)/∂x_t‖)")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
