"""`steertime duckietown ...`: a third-party simulator (gym-duckietown) in its own venv,
recorded and driven through the step protocol (docs/simulator.md#duckietown)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from steertime.cli.app import THREADS, app, console, progress
from steertime.cli.drive_summary import print_drive_summary

dt_app = typer.Typer(no_args_is_help=True, help="Duckietown lane following (own venv, bridge).")
app.add_typer(dt_app, name="duckietown")

MAPS_HELP = "Comma-separated Duckietown maps (default: the {} set)."


def _maps(maps: str, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m.strip() for m in maps.split(",") if m.strip()) or default


@dt_app.command()
def install(
    venv: Path = typer.Option(
        None, help="Where to create it (default $STEERTIME_DUCKIETOWN_VENV or ~/.cache/...)."
    ),
    apt: bool = typer.Option(True, help="apt-get the Mesa/EGL packages when missing."),
    python: str = typer.Option(None, help="Interpreter for the venv (default: this one)."),
) -> None:
    """Create the Duckietown venv (pinned packages), check a headless render."""
    from steertime.sim.duckietown.install import install as run_install

    path = run_install(venv, python, apt, log=lambda m: console.print(f"[bold]install[/]: {m}"))
    console.print(f"[green]Duckietown ready in {path}[/]")


@dt_app.command()
def record(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (generic format)."),
    minutes: float = typer.Option(10.0, help="Minutes of expert driving."),
    seed: int = typer.Option(0, help="Seed of the episodes (start poses)."),
    maps: str = typer.Option("", help=MAPS_HELP.format("training")),
    episode_s: float = typer.Option(60.0, help="Seconds per episode."),
) -> None:
    """Record the pure-pursuit expert with recovery perturbations on the training maps."""
    from steertime.sim.duckietown.client import Bridge
    from steertime.sim.duckietown.loop import FPS, TRAIN_MAPS
    from steertime.sim.duckietown.loop import record as run_record

    with Bridge() as bridge, progress("record", int(minutes * 60 * FPS)) as advance:
        run_record(bridge, out, minutes, seed, _maps(maps, TRAIN_MAPS), episode_s, advance)
    console.print(f"wrote {out}; next: steertime prepare {out} --out CACHE")


@dt_app.command()
def drive(
    run: Path = typer.Argument(None, help="A trained run (omit with --expert)."),
    expert: bool = typer.Option(False, help="Drive the expert instead of a model."),
    episodes: int = typer.Option(8, help="Held-out episodes (map + start pose)."),
    minutes: float = typer.Option(1.0, help="Minutes per episode."),
    seed: int = typer.Option(0, help="Seed of the held-out episodes."),
    maps: str = typer.Option("", help=MAPS_HELP.format("held-out")),
    offset_limit: float = typer.Option(0.15, help="Metres off the lane centre = intervention."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
    video: Path = typer.Option(None, help="Also render what the model saw (.mp4)."),
    threads: int = THREADS,
) -> None:
    """Drive a model closed-loop on held-out Duckietown maps; report autonomy."""
    from steertime.atomic import write_json
    from steertime.sim.duckietown import loop
    from steertime.sim.duckietown.client import Bridge
    from steertime.video import h264_writer

    if (run is None) == (not expert):
        raise typer.BadParameter("give a RUN or --expert (not both)")
    eps = loop.episodes(seed, episodes, _maps(maps, loop.HELDOUT_MAPS), heldout=True)
    with contextlib.ExitStack() as stack:
        hook = None
        if video is not None:
            writer = stack.enter_context(h264_writer(video, loop.FPS))

            def hook(obs, pred, n, map_name):
                writer.write(loop.video_frame(obs, pred, n, map_name))

        if expert:
            policy = loop.ExpertPolicy()
        else:
            from steertime.stream import Predictor

            policy = Predictor.from_run(run, threads=threads)
        bridge = stack.enter_context(Bridge())
        report = loop.drive(bridge, policy, eps, minutes * 60, offset_limit, hook)
    s = report.summary()
    print_drive_summary(
        s,
        ("episode", "map", "seconds"),
        [
            (str(r["seed"]), map_name, f"{r['seconds']:.0f}")
            for (map_name, _), r in zip(eps, s["per_road"], strict=True)
        ],
        rate=f"|omega rate| {s['mean_abs_wheel_rate_degps']:.2f}/s over {s['km'] * 1000:.0f} m",
        per_km=False,
        max_offset_digits=3,
    )
    if out:
        write_json(out, s)
