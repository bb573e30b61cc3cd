"""`steertime` commands: reading, preparing and splitting recordings; frozen-CNN features."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer
from rich.table import Column, Table

from steertime import data
from steertime.cli.app import (
    CAMERA,
    FORMAT,
    KEEP_PILOT,
    MAP,
    MAPPING,
    MAX_GAP,
    STRICT,
    app,
    console,
    err,
    progress,
    read_options,
)
from steertime.data.preprocess import parse_crop, parse_size

TEST_SESSION = typer.Option(
    [], "--test-session", help="Split 'session': hold out this session (repeatable)."
)
VAL_SESSION = typer.Option(
    [], "--val-session", help="Split 'session': validate on this session (repeatable)."
)


@app.command()
def formats() -> None:
    """List the data formats steertime reads, and those it writes."""
    for name, desc in data.available_formats().items():
        console.print(f"[bold]{name}[/]: {desc}")
    console.print(
        "written by `export-dataset --format`: [bold]lerobot[/]: LeRobot v3.0 dataset "
        "(Parquet + MP4 per camera), read back by the lerobot reader"
    )
    console.print(
        "scored by `evaluate --udacity-ch2`: Udacity Challenge 2 CH2_final_evaluation.csv "
        "(frame_id, steering_angle, public)"
    )


@app.command()
def inspect(
    path: Path,
    format: str = FORMAT,
    max_gap: float = MAX_GAP,
    strict: bool = STRICT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    keep_pilot: bool = KEEP_PILOT,
    decode: bool = typer.Option(False, "--decode", help="Decode every frame to find bad ones."),
    camera: str = CAMERA,
) -> None:
    """Validate a recording and print its drives, signals and problems."""
    options = read_options(max_gap, strict, mapping, map, keep_pilot, camera)
    _print_summary(data.inspect(path, format, options, decode=decode))


def _print_summary(s: data.Summary) -> None:
    console.print(
        f"[bold]{s.path}[/] format [bold]{s.format}[/]: {len(s.drives)} drive(s), "
        f"{s.total_frames} frames, {s.total_duration_s:.1f} s"
    )
    # The mean steering per drive tells sessions driven round a track in opposite
    # directions apart (opposite signs): the case for training with data.flip.
    t = Table(
        Column("drive", overflow="fold"),  # the session ID ends the name: never cut it
        "frames",
        "duration s",
        "rate Hz",
        "video",
        "mean steering",
    )
    for d in s.drives:
        steer = next((g for g in d.signals if g.name == "steering"), None)
        t.add_row(
            d.name,
            str(d.frames),
            f"{d.duration_s:.1f}",
            f"{d.rate_hz:.2f}",
            "yes" if d.has_frames else "MISSING",
            "-" if steer is None else f"{steer.mean:+.3g}",
        )
    console.print(t)
    if s.groups:
        _print_groups(s.groups)
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


def _print_groups(groups: list[data.GroupCount]) -> None:
    # Per session: what the tub holds against what will be used, so a tub whose early
    # sessions were never copied shows it at once.
    t = Table(
        Column("session", overflow="fold"),
        "records",
        "with images",
        "frames used",
        title="sessions",
    )
    for g in groups:
        t.add_row(g.name, str(g.records), str(g.with_images), str(g.frames))
    console.print(t)
    n, m = sum(g.records for g in groups), sum(g.with_images for g in groups)
    console.print(
        f"{len(groups)} session(s), {n} records, {m} with images, "
        f"{sum(g.frames for g in groups)} frames used"
    )


@app.command()
def prepare(
    path: Path,
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder to create."),
    size: str = typer.Option(
        "66x200", help="Model input HEIGHTxWIDTH, or 'native' (the camera's, after the crop)."
    ),
    crop: str = typer.Option("0,0", help="Rows to cut from the TOP,BOTTOM before resizing."),
    fps: float = typer.Option(None, help="Downsample to at most this frame rate."),
    split: str = typer.Option("tail", help="Split mode: tail, blocks, drive or session."),
    val: float = typer.Option(0.15, help="Fraction for validation."),
    test: float = typer.Option(0.15, help="Fraction for test."),
    guard: int = typer.Option(50, help="Frames dropped between splits (>= longest sequence)."),
    blocks: int = typer.Option(10, help="Blocks per drive in 'blocks' mode."),
    seed: int = typer.Option(0, help="Seed for 'blocks' and 'drive' splits."),
    test_session: list[str] = TEST_SESSION,
    val_session: list[str] = VAL_SESSION,
    workers: int = typer.Option(2, help="Decoding threads."),
    overwrite: bool = typer.Option(False, help="Replace an existing cache."),
    format: str = FORMAT,
    max_gap: float = MAX_GAP,
    strict: bool = STRICT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    keep_pilot: bool = KEEP_PILOT,
    camera: str = CAMERA,
) -> None:
    """Decode, crop and resize every frame once into a fast random-access cache."""
    from steertime.data.cache import frame_spec_for

    top, bottom = parse_crop(crop)
    if size.strip().lower() != "native":
        data.FrameSpec(*parse_size(size))  # a bad --size fails before the recording is read
    # every value is checked (PrepareConfig, SplitConfig) before the recording is read
    cfg = data.PrepareConfig(
        fps=fps,
        workers=workers,
        skip_bad_frames=not strict,
        split=data.SplitConfig(
            split, val, test, guard, blocks, seed, tuple(test_session), tuple(val_session)
        ),
    )
    options = read_options(max_gap, strict, mapping, map, keep_pilot, camera)
    rec = data.read_recording(path, format, options)
    spec, squashed = frame_spec_for(rec.drives, size, top, bottom)
    if squashed:
        err.print(f"[yellow]warning:[/] {squashed}", highlight=False)
    cfg = dataclasses.replace(cfg, frame=spec)
    _prepare_and_report(rec.drives, path, out, cfg, overwrite, rec.skipped)


def _prepare_and_report(
    drives: list,
    path: Path,
    out: Path,
    cfg: data.PrepareConfig,
    overwrite: bool,
    skipped: list[str],
) -> None:
    total = sum(len(d) for d in drives if d.frames is not None)
    started = time.perf_counter()
    with progress("prepare", total) as advance:
        cache = data.prepare_drives(
            drives,
            out,
            cfg,
            source=str(path),
            overwrite=overwrite,
            progress=advance,
            skipped=skipped,
        )
    rate = total / (time.perf_counter() - started)
    console.print(
        f"wrote {out}: {len(cache.drives)} drive(s), {cache.n_frames} frames of "
        f"{cfg.frame.height}x{cfg.frame.width}; {rate:.0f} frames/s; hash {cache.content_hash}"
    )
    _print_split(cache)
    if (cfg.split.val > 0 or cfg.split.val_sessions) and not cache.segments("val"):
        err.print(
            f"[yellow]warning:[/] {out}: the val split is empty (too few frames for "
            f"--val {cfg.split.val} and --guard {cfg.split.guard}); training will not validate",
            highlight=False,
        )
    for p in cache.manifest["skipped"]:
        console.print(f"[yellow]skipped[/] {p}", markup=True)


@app.command("export-dataset")
def export_dataset(
    source: Path,
    out: Path,
    to: str = typer.Option("lerobot", "--format", help="Dataset format to write: lerobot (v3.0)."),
    codec: str = typer.Option(
        "h264", help="h264 (yuv420p, CRF 18: small, lossy) or lossless (libx264rgb: exact)."
    ),
    fps: int = typer.Option(None, help="Nominal frame rate (default: the drives' median)."),
    task: str = typer.Option("drive the car: steer and keep speed", help="The task text."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset."),
    from_format: str = typer.Option(None, "--from-format", help="Reader for SOURCE."),
    camera: str = CAMERA,
) -> None:
    """Write a prepared cache or a recording as a LeRobot v3.0 dataset (Parquet + MP4)."""
    from steertime.data.lerobot import ExportOptions, dataset_drives, export_lerobot

    if to != "lerobot":
        raise typer.BadParameter(f"unknown dataset format {to!r}; known: lerobot")
    options = read_options(MAX_GAP.default, False, None, [], camera=camera)
    drives = dataset_drives(source, from_format, options)
    with progress("export", sum(len(d) for d in drives if d.frames is not None)) as advance:
        info = export_lerobot(
            drives,
            out,
            ExportOptions(codec=codec, fps=fps, task=task),
            source=str(source),
            overwrite=overwrite,
            progress=advance,
        )
    console.print(
        f"wrote {out}: LeRobot v3.0, {info['total_episodes']} episode(s), "
        f"{info['total_frames']} frames at {info['fps']} fps, codec {codec}"
    )
    for p in info["steertime"]["problems"]:
        console.print(f"[yellow]note:[/] {p}", highlight=False)


@app.command("split")
def split_cmd(
    cache: Path,
    mode: str = typer.Option("tail", help="tail, blocks, drive or session."),
    val: float = 0.15,
    test: float = 0.15,
    guard: int = 50,
    blocks: int = 10,
    seed: int = 0,
    test_session: list[str] = TEST_SESSION,
    val_session: list[str] = VAL_SESSION,
) -> None:
    """Recompute a cache's train/val/test split (frames are untouched)."""
    c = data.Cache.open(cache)
    c.resplit(
        data.SplitConfig(
            mode, val, test, guard, blocks, seed, tuple(test_session), tuple(val_session)
        )
    )
    _print_split(c)


def _print_split(c: data.Cache) -> None:
    from steertime.evaluate.metrics import BLOCK_S, MIN_BLOCKS

    for s, part in c.split_summary().items():
        n, secs = part["frames"], part["seconds"]
        console.print(f"{s}: {n} frames (sessions: {', '.join(part['sessions']) or '-'})")
        if s == "test" and n and secs < MIN_BLOCKS * BLOCK_S:
            console.print(
                f"[yellow]note:[/] the test split is {secs:.1f} s of driving: `evaluate` gives "
                f"RMSE but no 95% interval under {MIN_BLOCKS * BLOCK_S:g} s (raise --test, or "
                "score on another recording with `evaluate --data`)",
                highlight=False,
            )


@app.command()
def features(
    cache: Path,
    encoder: str = typer.Option("efficientnet_lite0", help="Registered encoder."),
    out: Path = typer.Option(None, "--out", "-o", help="Default: CACHE/features/ENCODER."),
    flip: bool = typer.Option(
        False, "--flip", help="Also encode every frame mirrored (for training with data.flip)."
    ),
    encoder_cfg: str = typer.Option(
        "{}",
        "--encoder-cfg",
        help="The encoder's settings as YAML, e.g. '{grid: [3, 5]}'; train with the same "
        "model.encoder_cfg.",
    ),
    heap: str = typer.Option(
        "keep",
        help="keep: malloc keeps freed blocks for the next batch (about 2x faster on Linux); "
        "system: as it comes. Like train.heap.",
    ),
) -> None:
    """Extract a frozen encoder's features for every cached frame once (resumable)."""
    from steertime.data.features import extract_features
    from steertime.heap import HEAPS

    if heap not in HEAPS:
        raise typer.BadParameter(f"--heap must be {' or '.join(HEAPS)}, got {heap!r}")
    c = data.Cache.open(cache)
    out = out or Path(cache) / "features" / encoder
    started = time.perf_counter()
    total = c.n_frames * (2 if flip else 1)
    with progress("features", total) as advance:
        extract_features(
            c, out, encoder, _yaml_dict(encoder_cfg), advance, flip, keep_heap=heap == "keep"
        )
    rate = total / (time.perf_counter() - started)
    cfg_hint = f" --set 'model.encoder_cfg={encoder_cfg}'" if encoder_cfg.strip() != "{}" else ""
    console.print(
        f"wrote {out} ({total} frames{' incl. mirrored' if flip else ''}, {rate:.0f} frames/s); "
        f"train with --set data.features={out} --model feat_lstm"
        + (" --set data.flip=true" if flip else "")
        + cfg_hint
    )


def _yaml_dict(text: str) -> dict:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise typer.BadParameter(f"--encoder-cfg is not YAML: {e}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"--encoder-cfg must be a mapping, got {text!r}")
    return value


@app.command()
def verify(cache: Path = typer.Argument(..., help="A prepared cache.")) -> None:
    """Re-read every frame and label of a cache and check its content hash (bit flips)."""
    from steertime.data.verify import verify_cache
    from steertime.errors import DataError

    c = data.Cache.open(cache)
    with progress("verify", c.n_frames) as advance:
        r = verify_cache(str(cache), advance)
    if not r.ok:
        raise DataError(r.line())
    console.print(r.line(), highlight=False)
