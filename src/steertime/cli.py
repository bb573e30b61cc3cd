"""The `steertime` command line: a thin layer over the Python API."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from steertime import data
from steertime.data.preprocess import FrameSpec, parse_crop, parse_size
from steertime.data.readers.generic import load_mapping, mapping_from_pairs
from steertime.errors import SteertimeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (only on a terminal); yields `advance(n)`."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _read_options(
    max_gap: float, strict: bool, mapping: Path | None, maps: list[str]
) -> data.ReadOptions:
    m = load_mapping(mapping) if mapping is not None else None
    if maps:
        m = _merge(m or {}, mapping_from_pairs(maps))
    return data.ReadOptions(max_gap_s=max_gap, strict=strict, mapping=m)


def _merge(base: dict, extra: dict) -> dict:
    out = {**base, **{k: v for k, v in extra.items() if k != "signals"}}
    out["signals"] = {**(base.get("signals") or {}), **extra.get("signals", {})}
    return out


FORMAT = typer.Option(None, "--format", "-f", help="Reader to use (default: auto-detect).")
MAX_GAP = typer.Option(1.0, "--max-gap", help="A gap longer than this (s) splits a drive.")
STRICT = typer.Option(False, "--strict", help="Treat fixable data problems as errors.")
MAPPING = typer.Option(None, "--mapping", help="Generic format: mapping YAML/TOML file.")
MAP = typer.Option([], "--map", help="Generic format: KEY=VALUE, e.g. steering=angle:deg.")


@app.command()
def formats() -> None:
    """List the data formats steertime reads."""
    for name, desc in data.available_formats().items():
        console.print(f"[bold]{name}[/]: {desc}")


@app.command()
def inspect(
    path: Path,
    format: str = FORMAT,
    max_gap: float = MAX_GAP,
    strict: bool = STRICT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    decode: bool = typer.Option(False, "--decode", help="Decode every frame to find bad ones."),
) -> None:
    """Validate a recording and print its drives, signals and problems."""
    _print_summary(
        data.inspect(path, format, _read_options(max_gap, strict, mapping, map), decode=decode)
    )


def _print_summary(s: data.Summary) -> None:
    console.print(
        f"[bold]{s.path}[/] format [bold]{s.format}[/]: {len(s.drives)} drive(s), "
        f"{s.total_frames} frames, {s.total_duration_s:.1f} s"
    )
    t = Table("drive", "frames", "duration s", "rate Hz", "video")
    for d in s.drives:
        t.add_row(
            d.name,
            str(d.frames),
            f"{d.duration_s:.1f}",
            f"{d.rate_hz:.2f}",
            "yes" if d.has_frames else "MISSING",
        )
    console.print(t)
    st = Table(
        "signal", "unit", "to rad", "angle of", "min", "mean", "max", title="signals (all drives)"
    )
    by_name: dict[str, list] = {}
    for d in s.drives:
        for g in d.signals:
            by_name.setdefault(g.name, []).append(g)
    for name, gs in by_name.items():
        g0 = gs[0]
        st.add_row(
            name,
            g0.unit,
            "-" if g0.to_radians is None else f"{g0.to_radians:.5g}",
            g0.angle_of or "-",
            f"{min(g.min for g in gs):.4g}",
            f"{sum(g.mean for g in gs) / len(gs):.4g}",
            f"{max(g.max for g in gs):.4g}",
        )
    console.print(st)
    if s.problems:
        console.print(f"[yellow]problems found ({len(s.problems)}):[/]")
        for p in s.problems:
            console.print(f"  - {p}", markup=False, highlight=False)
    else:
        console.print("[green]no problems found[/]")


@app.command()
def prepare(
    path: Path,
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder to create."),
    size: str = typer.Option("66x200", help="Model input HEIGHTxWIDTH."),
    crop: str = typer.Option("0,0", help="Rows to cut from the TOP,BOTTOM before resizing."),
    fps: float = typer.Option(None, help="Downsample to at most this frame rate."),
    split: str = typer.Option("tail", help="Split mode: tail, blocks or drive."),
    val: float = typer.Option(0.15, help="Fraction for validation."),
    test: float = typer.Option(0.15, help="Fraction for test."),
    guard: int = typer.Option(50, help="Frames dropped between splits (>= longest sequence)."),
    blocks: int = typer.Option(10, help="Blocks per drive in 'blocks' mode."),
    seed: int = typer.Option(0, help="Seed for 'blocks' and 'drive' splits."),
    workers: int = typer.Option(2, help="Decoding threads."),
    overwrite: bool = typer.Option(False, help="Replace an existing cache."),
    format: str = FORMAT,
    max_gap: float = MAX_GAP,
    strict: bool = STRICT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
) -> None:
    """Decode, crop and resize every frame once into a fast random-access cache."""
    h, w = parse_size(size)
    top, bottom = parse_crop(crop)
    cfg = data.PrepareConfig(
        frame=FrameSpec(h, w, top, bottom),
        fps=fps,
        workers=workers,
        skip_bad_frames=not strict,
        split=data.SplitConfig(split, val, test, guard, blocks, seed),
    )
    drives = data.read_drives(path, format, _read_options(max_gap, strict, mapping, map))
    _prepare_and_report(drives, path, out, cfg, overwrite)


def _prepare_and_report(
    drives: list, path: Path, out: Path, cfg: data.PrepareConfig, overwrite: bool
) -> None:
    total = sum(len(d) for d in drives if d.frames is not None)
    started = time.perf_counter()
    with _progress("prepare", total) as advance:
        cache = data.prepare_drives(
            drives,
            out,
            cfg,
            source=str(path),
            overwrite=overwrite,
            progress=advance,
        )
    rate = total / (time.perf_counter() - started)
    segs = cache.segments()
    counts = {s: sum(len(g) for g in segs if g.split == s) for s in ("train", "val", "test")}
    console.print(
        f"wrote {out}: {len(cache.drives)} drive(s), {cache.n_frames} frames of "
        f"{cfg.frame.height}x{cfg.frame.width}; "
        f"train {counts['train']}, val {counts['val']}, test {counts['test']} frames; "
        f"{rate:.0f} frames/s; hash {cache.content_hash}"
    )
    for p in cache.manifest["skipped"]:
        console.print(f"[yellow]skipped[/] {p}", markup=True)


@app.command("split")
def split_cmd(
    cache: Path,
    mode: str = typer.Option("tail", help="tail, blocks or drive."),
    val: float = 0.15,
    test: float = 0.15,
    guard: int = 50,
    blocks: int = 10,
    seed: int = 0,
) -> None:
    """Recompute a cache's train/val/test split (frames are untouched)."""
    c = data.Cache.open(cache)
    c.resplit(data.SplitConfig(mode, val, test, guard, blocks, seed))
    for s in ("train", "val", "test"):
        console.print(f"{s}: {sum(len(g) for g in c.segments(s))} frames")


@app.command()
def train(
    data_: Path = typer.Option(None, "--data", help="Prepared cache (steertime prepare)."),
    model: str = typer.Option(None, help="Registered model, e.g. pilotnet, cnn_lstm, komanda."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder to create (or resume)."),
    seq_len: int = typer.Option(None, help="TBPTT chunk length (train.seq_len)."),
    epochs: int = typer.Option(None, help="train.epochs"),
    batch_size: int = typer.Option(None, help="train.batch_size (lanes over all processes)."),
    lr: float = typer.Option(None, help="optim.lr"),
    outputs: str = typer.Option(None, help="Signals to predict, e.g. steering,speed."),
    config: Path = typer.Option(None, help="YAML config (e.g. written by tune or a run)."),
    set_: list[str] = typer.Option([], "--set", help="Override: section.key=value."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a model on a prepared cache (stateful truncated BPTT by default)."""
    from steertime.train import TrainConfig, apply_overrides, load_config
    from steertime.train import train as run_training

    if resume:
        if out is None:
            raise SteertimeError("--resume needs --out RUN")
        cfg = TrainConfig(out=str(out))
    else:
        cfg = load_config(config) if config else TrainConfig()
        pairs = [
            f"{k}={v}"
            for k, v in [
                ("model.name", model),
                ("train.seq_len", seq_len),
                ("train.epochs", epochs),
                ("train.batch_size", batch_size),
                ("optim.lr", lr),
                ("data.outputs", outputs),
            ]
            if v is not None
        ]
        cfg = apply_overrides(cfg, pairs + list(set_))
        if data_ is not None:
            cfg.data.cache = str(data_)
        if out is not None:
            cfg.out = str(out)
        if not cfg.data.cache or not cfg.out:
            raise SteertimeError("train needs --data CACHE and --out RUN (or a --config with both)")
    run = run_training(cfg, resume=resume)
    console.print(f"run written to {run} (best: {run / 'checkpoints' / 'best'})")


@app.command()
def predict(
    run: Path,
    source: Path,
    out: Path = typer.Option(..., "--out", "-o", help="Predictions file (.csv or .parquet)."),
    onnx: Path = typer.Option(None, help="Use this exported ONNX folder instead of PyTorch."),
    max_gap: float = typer.Option(1.0, help="A timestamp gap longer than this resets the state."),
    format: str = FORMAT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
) -> None:
    """Run a trained model frame by frame over a recording or a bare video."""
    from steertime.stream import OnnxPredictor, Predictor
    from steertime.stream.run import load_source, predict_drives, write_table

    p = (
        OnnxPredictor(onnx, max_gap_s=max_gap)
        if onnx
        else Predictor.from_run(run, max_gap_s=max_gap)
    )
    drives = load_source(source, format, _read_options(1.0, False, mapping, map))
    total = sum(len(d) for d in drives)
    started = time.perf_counter()
    with _progress("predict", total) as advance:
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
) -> None:
    """Export one streaming step of a trained model, state as explicit inputs/outputs."""
    from steertime.stream import export_onnx

    if format != "onnx":
        raise SteertimeError(f"export format {format!r} is not supported (onnx)")
    folder = export_onnx(run, out or Path(run) / "export")
    console.print(f"wrote {folder / 'model.onnx'} and {folder / 'model.json'}")


def _print_leaderboard(result: dict) -> None:
    from steertime.evaluate import leaderboard

    for name, entry in result["outputs"].items():
        rad = any("rmse_rad" in m for m in entry["models"].values())
        unit = entry["unit"].get("name", "")
        t = Table(
            "model",
            f"RMSE [{unit}]",
            "95% CI",
            *(["RMSE rad"] if rad else []),
            "MAE",
            "R²",
            "lag s",
            "rate/driver",
            title=f"{name} ({result['frames']} frames)",
        )
        for r in leaderboard(result, name):
            lo, hi = r["rmse_ci95"]
            cells = [r["model"], f"{r['rmse']:.4g}", f"{lo:.4g}–{hi:.4g}"]
            if rad:
                cells.append(f"{r['rmse_rad']:.4g}" if "rmse_rad" in r else "-")
            cells += [
                f"{r['mae']:.4g}",
                f"{r['r2']:.3f}",
                f"{r['lag_s']:+.2f}",
                f"{r['rate_ratio_to_driver']:.2f}",
            ]
            t.add_row(*cells, style="bold" if r["model"] == result["primary"] else None)
        console.print(t)


@app.command()
def evaluate(
    run: Path,
    data_: Path = typer.Option(..., "--data", help="Prepared cache, or a recording in any format."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for metrics.json, plots, report.html."
    ),
    split: str = typer.Option("test", help="Cache split to score (train, val, test, all)."),
    compare: list[str] = typer.Option([], help="Other runs to score on the same frames."),
    format: str = FORMAT,
) -> None:
    """Score a run streaming over held-out data against predict-zero, predict-mean and others."""
    from steertime.evaluate import evaluate_to_dir

    result = evaluate_to_dir(run, data_, out, None if split == "all" else split, compare, format)
    _print_leaderboard(result)
    console.print(f"report: {out / 'report.html'}")


@app.command()
def compare(
    runs: list[Path],
    data_: Path = typer.Option(..., "--data", help="Prepared cache, or a recording."),
    out: Path = typer.Option(..., "--out", "-o"),
    split: str = typer.Option("test"),
    output: str = typer.Option("steering", help="Output the leaderboard ranks by."),
) -> None:
    """A leaderboard of several runs on the same frames, with confidence intervals."""
    from steertime.evaluate import evaluate_to_dir, leaderboard
    from steertime.evaluate.plots import leaderboard as plot_leaderboard

    result = evaluate_to_dir(runs[0], data_, out, None if split == "all" else split, runs[1:])
    _print_leaderboard(result)
    plot_leaderboard(leaderboard(result, output), output, out / f"leaderboard_{output}.png")
    console.print(
        f"leaderboard: {out / f'leaderboard_{output}.png'}; report: {out / 'report.html'}"
    )


@app.command()
def render(
    run: Path,
    source: Path,
    out: Path = typer.Option(..., "--out", "-o", help="Overlay video (.mp4)."),
    output: str = typer.Option("steering", help="Which output the wheels show."),
    format: str = FORMAT,
) -> None:
    """Draw true and predicted steering wheels over the camera video (H.264)."""
    from steertime.evaluate.render import render as render_video
    from steertime.stream import Predictor
    from steertime.stream.run import load_source

    drives = load_source(source, format)
    with _progress("render", sum(len(d) for d in drives)) as advance:
        render_video(
            Predictor.from_run(run),
            drives,
            out,
            output=output,
            progress=advance,
        )
    console.print(f"wrote {out}")


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (generic format)."),
    minutes: float = typer.Option(5.0, help="Minutes of driving to record."),
    seed: int = typer.Option(0, help="Seed of the roads (and their look)."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    size: str = typer.Option("160x320", help="Camera HEIGHTxWIDTH."),
) -> None:
    """Record an expert driving procedurally generated roads (images + CSV + steertime.yaml)."""
    from steertime.sim import CameraSpec
    from steertime.sim import simulate as run_sim

    h, w = parse_size(size)
    total = int(minutes * 60 * fps)
    with _progress("simulate", total) as advance:
        run_sim(out, minutes, seed, fps, CameraSpec(h, w), progress=advance)
    console.print(f"wrote {out}: {total} frames; next: steertime prepare {out} --out CACHE")


@app.command()
def drive(
    run: Path,
    roads: int = typer.Option(10, help="Number of unseen roads."),
    minutes: float = typer.Option(2.0, help="Minutes per road."),
    seed: int = typer.Option(0, help="Seed of the held-out roads."),
    fps: float = typer.Option(10.0),
    offset_limit: float = typer.Option(
        1.0, help="Metres off the lane centre that count as an intervention."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
    video: Path = typer.Option(None, help="Also render camera + bird's-eye view (.mp4)."),
) -> None:
    """Drive a trained model closed-loop on unseen simulated roads; report autonomy."""
    from steertime.atomic import write_json
    from steertime.sim import drive as run_drive
    from steertime.sim import heldout_seeds
    from steertime.sim.video import compose
    from steertime.stream import Predictor
    from steertime.video import h264_writer

    seeds = heldout_seeds(seed, roads)
    with contextlib.ExitStack() as stack:
        hook = None
        if video is not None:
            writer = stack.enter_context(h264_writer(video, fps))

            def hook(world, pred, frame, n):
                writer.write(compose(world, frame, pred, n))

        report = run_drive(Predictor.from_run(run), seeds, minutes * 60, fps, offset_limit, hook)
    s = report.summary()
    t = Table("road", "seconds", "km", "interventions", "mean |offset| m", "max |offset| m")
    for r in s["per_road"]:
        t.add_row(
            str(r["seed"]),
            f"{r['seconds']:.0f}",
            f"{r['metres'] / 1000:.2f}",
            str(r["interventions"]),
            f"{r['mean_abs_offset']:.3f}",
            f"{r['max_abs_offset']:.2f}",
        )
    console.print(t)
    console.print(
        f"autonomy {s['autonomy_pct']:.2f}%  interventions {s['interventions']} "
        f"({s['interventions_per_km']:.2f}/km)  mean |offset| {s['mean_abs_offset_m']:.3f} m  "
        f"|wheel rate| {s['mean_abs_wheel_rate_degps']:.1f} deg/s over {s['km']:.1f} km"
    )
    if out:
        write_json(out, s)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for everything."),
    minutes: float = typer.Option(6.0, help="Minutes of simulated driving to train on."),
    epochs: int = typer.Option(12, help="Training epochs per model."),
) -> None:
    """Simulate, prepare, train pilotnet + cnn_lstm, evaluate, drive closed-loop, report."""
    from steertime.demo import run_demo

    report = run_demo(out, minutes, epochs, log=lambda m: console.print(f"[bold]demo[/]: {m}"))
    closed = json.loads((out / "closed_loop.json").read_text())
    for m, r in closed.items():
        console.print(f"{m}: autonomy {r['autonomy_pct']:.1f}% on unseen roads")
    console.print(f"[green]report:[/] {report}")


@app.command()
def diagnose(
    run: Path = typer.Argument(None, help="A run folder (optional): adds the trained model."),
    data_: Path = typer.Option(..., "--data", help="Prepared cache: real sequences to trace."),
    length: int = typer.Option(50, help="Sequence length T."),
    sequences: int = typer.Option(8, help="Sequences to average over."),
    out: Path = typer.Option(Path("diagnose"), "--out", "-o"),
) -> None:
    """Gradient flow through time: ‖∂loss(T)/∂h_t‖ per recurrent type, and memory horizons."""
    from steertime.diagnostics.report import diagnose as run_diagnose

    result = run_diagnose(data.Cache.open(data_), run, length=length, n_seq=sequences, out=out)
    t = Table("model", "memory horizon (steps)", "‖∂L/∂h‖ at T", f"at T−{length - 1}")
    for name, r in result.items():
        t.add_row(name, str(r["horizon_steps"]), f"{r['norms'][-1]:.3g}", f"{r['norms'][0]:.3g}")
    console.print(t)
    console.print(f"plot: {out / 'gradient_flow.png'}")


@app.command("memory-task")
def memory_task_cmd(
    gaps: str = typer.Option("5,20,40", help="Steps between the cue and the target."),
    cells: str = typer.Option("rnn,lstm", help="Recurrent cells to compare."),
    steps: int = typer.Option(400, help="Training steps per cell and gap."),
) -> None:
    """Long-term dependencies, measured: can each cell carry a cue over the gap?"""
    from steertime.diagnostics import memory_task

    t = Table("cell", *[f"gap {g}" for g in gaps.split(",")], title="accuracy (0.5 = chance)")
    for cell in cells.split(","):
        accs = [memory_task(cell, int(g), steps=steps).accuracy for g in gaps.split(",")]
        t.add_row(cell, *[f"{a:.2f}" for a in accs])
    console.print(t)


@app.command()
def tune(
    data_: Path = typer.Option(..., "--data", help="Prepared cache."),
    model: str = typer.Option("cnn_lstm"),
    trials: int = typer.Option(20, help="Trials to run now (added to the study)."),
    storage: str = typer.Option(
        "sqlite:///study.db", help="Optuna storage URL (shared DB for many machines)."
    ),
    study: str = typer.Option("steertime", help="Study name: the same name resumes it."),
    out: Path = typer.Option(Path("tune"), "--out", "-o", help="Trial runs and best_config.yaml."),
    config: Path = typer.Option(None, help="Base config the search starts from."),
    set_: list[str] = typer.Option([], "--set", help="Base overrides: section.key=value."),
) -> None:
    """Search learning rate, hidden size, seq_len, dropout, clipping and optimiser with Optuna."""
    from steertime.train import TrainConfig, apply_overrides, load_config
    from steertime.train.tune import tune as run_tune

    base = apply_overrides(
        load_config(config) if config else TrainConfig(), [f"model.name={model}", *set_]
    )
    base.data.cache = str(data_)
    r = run_tune(base, trials, storage, study, out)
    console.print(
        f"study {r['study']}: {r['trials']} trials ({r['complete']} complete, "
        f"{r['pruned']} pruned); best val RMSE {r['best_value']:.4g} with {r['best_params']}"
    )
    console.print(
        f"best config: {r['best_config']}  →  steertime train --config {r['best_config']} --out RUN"
    )


@app.command()
def features(
    cache: Path,
    encoder: str = typer.Option("efficientnet_lite0", help="Registered encoder."),
    out: Path = typer.Option(None, "--out", "-o", help="Default: CACHE/features/ENCODER."),
) -> None:
    """Extract a frozen encoder's features for every cached frame once (resumable)."""
    from steertime.data.features import extract_features

    c = data.Cache.open(cache)
    out = out or Path(cache) / "features" / encoder
    started = time.perf_counter()
    with _progress("features", c.n_frames) as advance:
        extract_features(c, out, encoder, progress=advance)
    rate = c.n_frames / (time.perf_counter() - started)
    console.print(
        f"wrote {out} ({c.n_frames} frames, {rate:.0f} frames/s); "
        f"train with --set data.features={out} --model feat_lstm"
    )


def main() -> None:
    """Entry point: user-facing errors become one clear line and exit status 2."""
    try:
        app()
    except (SteertimeError, FileExistsError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
