"""`steertime` commands: the built-in simulator (record, drive closed-loop, demo)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.table import Table

from steertime.cli.app import THREADS, app, console, progress
from steertime.cli.drive_summary import print_drive_summary
from steertime.data.preprocess import parse_size
from steertime.sim.world import FPS


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (generic format)."),
    minutes: float = typer.Option(5.0, help="Minutes of driving to record."),
    seed: int = typer.Option(0, help="Seed of the roads (and their look)."),
    fps: float = typer.Option(FPS, help="Frames per second."),
    size: str = typer.Option("160x320", help="Camera HEIGHTxWIDTH."),
) -> None:
    """Record an expert driving procedurally generated roads (images + CSV + steertime.yaml)."""
    from steertime.sim import CameraSpec
    from steertime.sim import simulate as run_sim

    h, w = parse_size(size)
    total = int(minutes * 60 * fps)
    with progress("simulate", total) as advance:
        run_sim(out, minutes, seed, fps, CameraSpec(h, w), progress=advance)
    console.print(f"wrote {out}: {total} frames; next: steertime prepare {out} --out CACHE")


@app.command()
def drive(
    run: Path,
    roads: int = typer.Option(10, help="Number of unseen roads."),
    minutes: float = typer.Option(2.0, help="Minutes per road."),
    seed: int = typer.Option(0, help="Seed of the held-out roads."),
    fps: float = typer.Option(FPS),
    offset_limit: float = typer.Option(
        1.0, help="Metres off the lane centre that count as an intervention."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
    video: Path = typer.Option(None, help="Also render camera + bird's-eye view (.mp4)."),
    threads: int = THREADS,
    faults: str = typer.Option(
        "", help="Camera faults KIND:LENGTH_S@EVERY_S,... e.g. blackout:0.5@10 (docs/simulator.md)."
    ),
    takeover_spread: float = typer.Option(
        None,
        help="Ask the driver to take over when the steering spread exceeds this (runs "
        "trained with train.spread); reports warned interventions and false requests.",
    ),
    takeover_hold: int = typer.Option(
        1, help="Ask only once the spread has stayed above --takeover-spread this many frames."
    ),
    adapt_gamma: float = typer.Option(
        0.0,
        min=0.0,
        help="Runs with a spread: recalibrate the speed and torque intervals online from "
        "what the car measures (adaptive conformal step, e.g. 0.05; 0: off).",
    ),
) -> None:
    """Drive a trained model closed-loop on unseen simulated roads; report autonomy."""
    from steertime.atomic import write_json
    from steertime.data.faults import parse_faults
    from steertime.sim import drive as run_drive
    from steertime.sim import heldout_seeds
    from steertime.sim.drive import Takeover
    from steertime.sim.video import compose
    from steertime.stream import Predictor
    from steertime.video import h264_writer

    seeds = heldout_seeds(seed, roads)
    fault_specs = parse_faults(faults)
    takeover = None if takeover_spread is None else Takeover(takeover_spread, takeover_hold)
    with contextlib.ExitStack() as stack:
        hook = None
        if video is not None:
            writer = stack.enter_context(h264_writer(video, fps))
            asking = takeover.live() if takeover else None

            def hook(world, pred, frame, n):
                ask = asking(pred.get("steering_std", 0.0)) if asking else False
                writer.write(compose(world, frame, pred, n, ask))

        p = (
            Predictor.from_run(run, threads=threads)
            if takeover is None and not adapt_gamma
            else _spread_predictor(
                run, threads, "--takeover-spread" if takeover else "--adapt-gamma", adapt_gamma
            )
        )
        report = run_drive(p, seeds, minutes * 60, fps, offset_limit, hook, fault_specs, takeover)
    s = report.summary()
    print_drive_summary(
        s,
        ("road", "seconds", "km"),
        [
            (str(r["seed"]), f"{r['seconds']:.0f}", f"{r['metres'] / 1000:.2f}")
            for r in s["per_road"]
        ],
        rate=f"|wheel rate| {s['mean_abs_wheel_rate_degps']:.1f} deg/s over {s['km']:.1f} km",
        per_km=True,
        max_offset_digits=2,
    )
    if fault_specs:
        console.print(
            f"camera faults ({faults}): {s['fault_minutes'] * 60:.0f} s faulty, "
            f"{s['fault_interventions']} of the interventions during or just after a fault"
        )
    if s["torque_rmse_nm"] is not None:
        console.print(f"torque RMSE against the car's {s['torque_rmse_nm']:.3f} N·m")
    if cov := s["coverage90_measured"]:
        how = f"recalibrated online, gamma {adapt_gamma:g}" if adapt_gamma else "as trained"
        console.print(
            f"90% intervals ({how}) hold what the car measured: "
            + ", ".join(
                f"{n} {c:.1%} (mean spread {s['mean_spread_measured'][n]:.3g})"
                for n, c in cov.items()
            )
        )
    if takeover_spread is not None:
        per10 = s["false_requests"] / max(s["minutes"] / 10, 1e-9)
        console.print(
            f"takeover requests (steering spread > {takeover_spread:g} for "
            f"{takeover_hold} frame{'s' if takeover_hold > 1 else ''}): "
            f"{s['takeover_requests']}, {s['warned_interventions']} of "
            f"{s['interventions']} interventions warned up to 2 s before, "
            f"{s['false_requests']} false ({per10:.2f} per 10 min)"
        )
    if out:
        write_json(out, s)


@app.command("takeover-rule")
def takeover_rule(
    run: Path,
    faults: str = typer.Option(
        "blackout:2@10", help="The camera faults the car should ask for (KIND:LENGTH_S@EVERY_S)."
    ),
    roads: int = typer.Option(20, help="Validation roads, each driven clean and with faults."),
    minutes: float = typer.Option(1.0, help="Minutes per road."),
    seed: int = typer.Option(
        1000, help="Seed of the validation roads (drive's test roads use --seed 0)."
    ),
    max_false: float = typer.Option(
        0.5, help="False requests per 10 clean minutes allowed (strictly fewer)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write the rule and its counts (JSON)."),
    threads: int = THREADS,
) -> None:
    """Choose --takeover-spread / --takeover-hold for a spread run on validation roads."""
    from steertime.atomic import write_json
    from steertime.data.faults import parse_faults
    from steertime.errors import SteertimeError
    from steertime.sim import heldout_seeds
    from steertime.sim.takeover import choose_rule

    fault_specs = parse_faults(faults)
    if not fault_specs:
        raise SteertimeError("takeover-rule: give --faults, the faults the car should ask for")
    p = _spread_predictor(run, threads, "a takeover rule")
    chosen, _, _ = choose_rule(p, heldout_seeds(seed, roads), minutes * 60, fault_specs, max_false)
    c, f = chosen.clean, chosen.faulty
    console.print(
        f"takeover rule for {run}: --takeover-spread {chosen.takeover.spread:.4g} "
        f"--takeover-hold {chosen.takeover.hold}\n"
        f"on {roads} validation roads x {minutes:g} min (seed {seed}): with {faults} it warned "
        f"of {f['warned_interventions']} of {f['interventions']} interventions; clean, "
        f"{c['false_requests']} false requests ({c['false_per_10_min']:.2f} per 10 min). "
        "Score it on other roads: steertime drive RUN --seed 0 --faults ... with both flags."
    )
    if out:
        write_json(out, {"run": str(run), "faults": faults, "seed": seed, **chosen.to_dict()})


def _spread_predictor(run: Path, threads: int, needs: str, adapt_gamma: float = 0.0):
    """A run's streaming predictor, refusing a run that predicts no spread."""
    from steertime.errors import SteertimeError
    from steertime.stream import Predictor

    p = Predictor.from_run(run, threads=threads)
    if not p.layout.spread:
        raise SteertimeError(f"{run}: {needs} needs a run trained with train.spread=true")
    return (
        Predictor(p.model, p.meta, threads=threads, adapt_gamma=adapt_gamma) if adapt_gamma else p
    )


@app.command("drive-compare")
def drive_compare(
    a: list[Path] = typer.Option(..., "--a", help="Drive report(s) of model a (`drive --out`)."),
    b: list[Path] = typer.Option(..., "--b", help="Model b's, on the same roads, same order."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the comparison as JSON."),
) -> None:
    """Paired comparison of two models' closed-loop drives: autonomy and lane keeping."""
    from steertime.atomic import write_json
    from steertime.sim.compare import MIN_ROADS, compare_drives, load_roads

    if len(a) != len(b):
        raise typer.BadParameter(f"{len(a)} reports for a, {len(b)} for b: pair them")
    c = compare_drives([r for p in a for r in load_roads(p)], [r for p in b for r in load_roads(p)])
    t = Table("measure", "a", "b", "a − b (95% CI)", "drives a better / b better")
    au = c["autonomy_pct"]
    t.add_row("autonomy %", f"{au['a']:.2f}", f"{au['b']:.2f}", _diff_cell(au, 2), "")
    for name, m in c.items():
        if isinstance(m, dict) and "a_better_roads" in m:
            t.add_row(
                name,
                f"{m['a']:.3f}",
                f"{m['b']:.3f}",
                _diff_cell(m, 3),
                f"{m['a_better_roads']} / {m['b_better_roads']}",
            )
    console.print(t)
    console.print(
        f"{c['roads']} drives of {c['road_seeds']} roads; lower is better except autonomy; "
        + (
            "an interval that contains 0 cannot tell the two apart"
            if c["road_seeds"] >= MIN_ROADS
            else f"no intervals under {MIN_ROADS} roads: too few to tell the two apart"
        )
    )
    if out:
        write_json(out, c)


def _diff_cell(m: dict, digits: int) -> str:
    """a − b and its paired interval, or the difference alone when there is none."""
    if m["ci95"] is None:
        return f"{m['diff']:+.{digits}f} (–)"
    lo, hi = m["ci95"]
    return f"{m['diff']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


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
