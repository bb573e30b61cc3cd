"""ONNX export of one streaming step, and an onnxruntime predictor with the same API.

The graph takes one preprocessed frame and the state as explicit inputs and returns the
outputs (physical units) and the next state, so any runtime (C++, a Raspberry Pi) can
carry the state itself:

    inputs:  frame (1, H, W, 3) uint8, [missing (1, 1) float32: 1 = no image, for models
             trained with the frame-missing flag], then one tensor per state entry (sorted)
    outputs: outputs (1, K) float32, then `<name>_out` for each state entry

A JSON sidecar (`model.json`) records the preprocessing, the output names, units and
normalisation, and the state tensors' names and shapes.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steertime.atomic import atomic_file, write_json
from steertime.data.preprocess import FrameSpec
from steertime.models import OutputLayout
from steertime.models.checkpoint import load_model
from steertime.models.layout import LOG_SPREAD_BOUND, expectation
from steertime.stream.predictor import StreamingPredictor
from steertime.stream.threads import DEFAULT_THREADS

OPSET = 17


class _OneStep(nn.Module):
    def __init__(self, model, layout: OutputLayout, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names
        self.flag = bool(model.missing_input)
        self.register_buffer("mean", torch.tensor(layout.mean))
        self.register_buffer("std", torch.tensor(layout.std))
        inf = [math.inf] * layout.k
        self.register_buffer("low", torch.tensor(layout.low or [-x for x in inf]))
        self.register_buffer("high", torch.tensor(layout.high or inf))
        # `spread`: K more outputs, the calibrated standard deviations (physical units).
        self.k, self.spread = layout.k, layout.spread
        scale = torch.tensor(layout.spread_scale or [1.0] * layout.k)
        self.register_buffer("spread_factor", torch.tensor(layout.std) * scale)
        # `bins`: the head's K*N logits become K expectations inside the graph.
        self.bins = bool(layout.bins)
        if self.bins:
            self.register_buffer("centers", torch.tensor(layout.bin_centers(), dtype=torch.float32))

    def forward(self, frame: torch.Tensor, *inputs: torch.Tensor):
        missing, state = (inputs[0] > 0.5, inputs[1:]) if self.flag else (None, inputs)
        y, new = self.model(frame.unsqueeze(1), dict(zip(self.names, state, strict=True)), missing)
        mu = expectation(y[:, 0], self.centers) if self.bins else y[:, 0, : self.k]
        mu = mu * self.std + self.mean
        out = torch.maximum(torch.minimum(mu, self.high), self.low)
        if self.spread:
            log_s = y[:, 0, self.k :].clamp(-LOG_SPREAD_BOUND, LOG_SPREAD_BOUND)
            out = torch.cat([out, torch.exp(log_s) * self.spread_factor], dim=-1)
        return (out, *[new[n] for n in self.names])


def export_onnx(run: str | Path, out: str | Path) -> Path:
    """Export a run's best model to `out/model.onnx` + `out/model.json`."""
    model, meta = load_model(run)
    model.eval()
    layout, frame = meta.layout, meta.require_frame()
    state = model.init_state(1)
    names = sorted(state)
    step = _OneStep(model, layout, names).eval()
    x = torch.zeros(1, frame.height, frame.width, 3, dtype=torch.uint8)
    flag = ["missing"] if step.flag else []
    extra = [torch.zeros(1, 1)] if step.flag else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "model.onnx") as f, warnings.catch_warnings():
        # The TorchScript exporter handles stateful RNN steps reliably; silence its notices.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            step,
            (x, *extra, *[state[n] for n in names]),
            f,
            input_names=["frame", *flag, *names],
            output_names=["outputs", *[f"{n}_out" for n in names]],
            opset_version=OPSET,
            dynamo=False,
        )
    sidecar = {
        "format": "steertime-onnx-step/1",
        "model": meta.model,
        "model_config": meta.model_config,
        "frame": frame.to_dict(),
        "source_size": list(meta.source_size) if meta.source_size else None,
        "layout": layout.to_dict(),
        "outputs_are": "physical units (de-normalised and clipped to layout low/high in the "
        "graph); with layout.spread, K calibrated standard deviations follow the K means",
        "inputs": ["frame", *flag, *names],
        # with "missing" among the inputs: feed 1.0 for a frame that never arrived (or was
        # black, glaring or frozen), with any frame (zeros); the state rolls on memory
        "missing_input": step.flag,
        "state": {n: {"shape": list(state[n].shape), "dtype": "float32"} for n in names},
        "data_hash": meta.data_hash,
        "code_version": meta.code_version,
    }
    write_json(out / "model.json", sidecar)
    return out


class OnnxPredictor(StreamingPredictor):
    """onnxruntime backend: same `step()` / `reset()` as `Predictor`; `threads` intra-op
    threads (default 1, see `steertime.stream.threads`; 0: onnxruntime's default)."""

    def __init__(self, folder: str | Path, threads: int = DEFAULT_THREADS, **kw) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        self.sidecar = json.loads((folder / "model.json").read_text())
        super().__init__(
            OutputLayout.from_dict(self.sidecar["layout"]),
            FrameSpec.from_dict(self.sidecar["frame"]),
            self.sidecar.get("source_size"),
            missing_input=bool(self.sidecar.get("missing_input", False)),
            **kw,
        )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.names = [n for n in self.sidecar["inputs"][1:] if n != "missing"]
        self._reset_state()

    def _reset_state(self) -> None:
        st = self.sidecar["state"]
        self.state = {n: np.zeros(st[n]["shape"], np.float32) for n in self.names}

    def _run(self, frame: np.ndarray, missing: bool = False) -> np.ndarray:
        flag = {}
        if self.missing_input:
            flag["missing"] = np.full((1, 1), float(missing), np.float32)
        res = self.session.run(None, {"frame": frame[None], **flag, **self.state})
        self.state = dict(zip(self.names, res[1:], strict=True))
        return res[0][0]
