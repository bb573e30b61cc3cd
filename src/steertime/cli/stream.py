"""`steertime` commands: per-frame predictions and ONNX export."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from steertime.cli.app import (
    CAMERA,
    FORMAT,
    MAP,
    MAPPING,
    THREADS,
    app,
    console,
    progress,
    read_options,
)
from steertime.data.drive import DEFAULT_MAX_GAP_S
from steertime.errors import SteertimeError


@app.command()
def predict(
    run: Path,
    source: Path,
    out: Path = typer.Option(..., "--out", "-o", help="Predictions file (.csv or .parquet)."),
    onnx: Path = typer.Option(None, help="Use this exported ONNX folder instead of PyTorch."),
    max_gap: float = typer.Option(
        DEFAULT_MAX_GAP_S, help="A timestamp gap longer than this resets the state."
    ),
    format: str = FORMAT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    threads: int = THREADS,
    camera: str = CAMERA,
    adapt_gamma: float = typer.Option(
        0.0,
        min=0.0,
        help="Runs with a spread: recalibrate each <output>_std online from the "
        "recording's own log, told after each frame (e.g. 0.05; 0: as trained).",
    ),
) -> None:
    """Run a trained model frame by frame over a recording or a bare video."""
    from steertime.stream import OnnxPredictor, Predictor
    from steertime.stream.run import load_source, predict_drives, write_table

    kw = {"threads": threads, "max_gap_s": max_gap, "adapt_gamma": adapt_gamma}
    p = OnnxPredictor(onnx, **kw) if onnx else Predictor.from_run(run, **kw)
    options = read_options(DEFAULT_MAX_GAP_S, False, mapping, map, camera=camera)
    drives = load_source(source, format, options)
    total = sum(len(d) for d in drives)
    started = time.perf_counter()
    with progress("predict", total) as advance:
        df = predict_drives(p, drives, progress=advance)
    write_table(df, out)
    rate = total / (time.perf_counter() - started)
    skipped = int((df["status"] == "skipped").sum())
    resets = int((df["status"] == "reset").sum())
    console.print(
        f"wrote {out}: {len(df)} frames ({rate:.0f} frames/s), {resets} resets, {skipped} skipped"
    )


@app.command()
def export(
    run: Path,
    out: Path = typer.Option(None, "--out", "-o", help="Folder for model.onnx + model.json."),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    quantize: str = typer.Option(
        None, "--quantize", help="int8: static quantization (default out: RUN/export-int8)."
    ),
    calibrate: Path = typer.Option(
        None, help="Cache whose training frames calibrate int8 (default: the run's cache)."
    ),
) -> None:
    """Export one streaming step of a trained model, state as explicit inputs/outputs."""
    from steertime.stream import export_onnx

    if format != "onnx":
        raise SteertimeError(f"export format {format!r} is not supported (onnx)")
    if quantize is not None and quantize != "int8":
        raise SteertimeError(f"--quantize {quantize!r} is not supported (int8)")
    if quantize:
        from steertime.stream.quantize import export_int8

        folder = export_int8(run, out or Path(run) / "export-int8", calibrate)
    else:
        folder = export_onnx(run, out or Path(run) / "export")
    console.print(f"wrote {folder / 'model.onnx'} and {folder / 'model.json'}")
