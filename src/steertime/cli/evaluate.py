"""`steertime` commands: scoring runs, comparing them, rendering overlays."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Column, Table

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
from steertime.stream.adaptive import DEFAULT_GAMMA


def _print_leaderboard(result: dict) -> None:
    from steertime.evaluate import leaderboard
    from steertime.evaluate.cost import describe
    from steertime.evaluate.verdict import verdicts

    for name, entry in result["outputs"].items():
        rad = any("rmse_rad" in m for m in entry["models"].values())
        unit = entry["unit"].get("name", "")
        heads = ["model", f"RMSE [{unit}]", "95% CI", *(["RMSE rad"] if rad else [])]
        heads += ["MAE", "R²", "lag s", "rate/drv"]
        t = Table(
            # run names tell seeds and recipes apart: on a narrow terminal fold, never cut
            Column(heads[0], overflow="fold", min_width=8),
            *(Column(h, no_wrap=True) for h in heads[1:]),
            title=f"{name} ({result['frames']} frames)",
        )
        for r in leaderboard(result, name):
            lo, hi = r["rmse_ci95"]
            ci = f"{lo:.3g}–{hi:.3g}" if math.isfinite(lo) else "– (too few frames)"
            cells = [r["model"], f"{r['rmse']:.4g}", ci]
            if rad:
                cells.append(f"{r['rmse_rad']:.4g}" if "rmse_rad" in r else "-")
            cells += [
                f"{r['mae']:.4g}",
                f"{r['r2']:.3f}",
                f"{r['lag_s']:+.2f}" if math.isfinite(r["lag_s"]) else "–",
                f"{r['rate_ratio_to_driver']:.2f}",
            ]
            t.add_row(*cells, style="bold" if r["model"] == result["primary"] else None)
        console.print(t)
        for r in leaderboard(result, name):
            if r.get("lead_frames"):
                cov = r.get("coverage90_vs_trained_target")
                console.print(
                    f"{r['model']} trained on the log {r['lead_frames']} frames later "
                    f"(data.lead): RMSE {r['rmse_vs_trained_target']:.4g} against that target"
                    + (f", its 90% interval covers {cov:.1%} of it" if cov is not None else "")
                )
    for v in verdicts(result):
        console.print(("" if v.ok else "[yellow]warning:[/] ") + v.text, highlight=False)
    for name, cost in result.get("training", {}).items():
        console.print(describe(name, cost), highlight=False)


def _print_ch2(r: dict) -> None:
    parts = ("public", "private", "overall")
    t = Table(
        "Challenge 2 (HMB_3)",
        *(f"{p} RMSE" for p in parts),
        title=f"RMSE in {r['unit']}, {r['frames']['public']} public + "
        f"{r['frames']['private']} private frames",
    )
    t.add_row(r["name"], *(f"{r['rmse'][p]:.4f}" for p in parts), style="bold")
    t.add_row("all zeros (this file)", *(f"{r['zeros'][p]:.4f}" for p in parts))
    for b in r["board"]:
        t.add_row(f"{b['team']} (final board)", f"{b['public']:.4f}", f"{b['private']:.4f}", "–")
    console.print(t)
    console.print(f"a file of zeros scored {r['zeros_published']} as published with the board")


def _print_faults(result: dict) -> None:
    t = Table(
        "output",
        "model",
        "RMSE in faults",
        "RMSE in faults if shown",
        "RMSE clean",
        title=(
            f"camera faults {result['data'].get('faults')}: {result.get('fault_frames', 0)} of "
            f"{result['frames']} frames"
        ),
    )
    for name, entry in result["outputs"].items():
        for m, sc in entry["models"].items():
            seen = f"{sc['rmse_fault_sighted']:.4g}" if "rmse_fault_sighted" in sc else "–"
            t.add_row(name, m, f"{sc['rmse_fault']:.4g}", seen, f"{sc['rmse_clean']:.4g}")
    console.print(t)


@app.command()
def evaluate(
    run: Path,
    data_: Path = typer.Option(
        None,
        "--data",
        help="Prepared cache, or a recording in any format (required, except "
        "for --udacity-ch2 with a predictions file).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for metrics.json, plots, report.html (required, except for --udacity-ch2).",
    ),
    udacity_ch2: Path = typer.Option(
        None,
        "--udacity-ch2",
        help="Score on Udacity Challenge 2's CH2_final_evaluation.csv by frame_id; RUN may "
        "be a predictions CSV (frame_id,steering_angle or steertime predict's).",
    ),
    split: str = typer.Option("test", help="Cache split to score (train, val, test, all)."),
    compare: list[str] = typer.Option([], help="Other runs to score on the same frames."),
    format: str = FORMAT,
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    threads: int = THREADS,
    faults: str = typer.Option(
        "",
        help="Camera faults over the frames, KIND:LENGTH_S@EVERY_S,... (a cache): RMSE "
        "inside fault events and on clean frames is reported apart.",
    ),
    fault_seed: int = typer.Option(0, help="Seed of the fault schedule (same for every run)."),
    adapt_gamma: float = typer.Option(
        DEFAULT_GAMMA,
        min=0.0,
        help="Runs with a spread: also score the 90% interval recalibrated online from the "
        "outcomes already seen (adaptive conformal step; 0: off). See docs/evaluation.md.",
    ),
) -> None:
    """Score a run streaming over held-out data against predict-zero, predict-mean and others."""
    from steertime.evaluate import evaluate_to_dir

    options = read_options(DEFAULT_MAX_GAP_S, False, mapping, map)
    if udacity_ch2 is not None:
        from steertime.atomic import write_json
        from steertime.evaluate.udacity_ch2 import evaluate_ch2

        r = evaluate_ch2(udacity_ch2, run, data_, format, options, threads)
        _print_ch2(r)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "udacity_ch2.json", r)
            console.print(f"wrote {out / 'udacity_ch2.json'}")
        return
    if data_ is None or out is None:
        raise typer.BadParameter("--data and --out are required (except with --udacity-ch2)")
    split_ = None if split == "all" else split
    result = evaluate_to_dir(
        run,
        data_,
        out,
        split_,
        compare,
        format,
        options,
        threads=threads,
        faults=faults or None,
        fault_seed=fault_seed,
        adapt_gamma=adapt_gamma,
    )
    _print_leaderboard(result)
    if faults:
        _print_faults(result)
    console.print(f"report: {out / 'report.html'}")


@app.command()
def compare(
    runs: list[Path],
    data_: Path = typer.Option(..., "--data", help="Prepared cache, or a recording."),
    out: Path = typer.Option(..., "--out", "-o"),
    split: str = typer.Option("test"),
    output: str = typer.Option("steering", help="Output the leaderboard ranks by."),
    threads: int = THREADS,
) -> None:
    """A leaderboard of several runs on the same frames, with confidence intervals."""
    from steertime.evaluate import evaluate_to_dir, leaderboard
    from steertime.evaluate.plots import leaderboard as plot_leaderboard

    split_ = None if split == "all" else split
    result = evaluate_to_dir(runs[0], data_, out, split_, runs[1:], threads=threads)
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
    mapping: Path = MAPPING,
    map: list[str] = MAP,
    threads: int = THREADS,
    camera: str = CAMERA,
    adapt_gamma: float = typer.Option(
        0.0,
        min=0.0,
        help="Runs with a spread: recalibrate the drawn 90% interval online from the "
        "recording's truth as it plays (adaptive conformal step, e.g. 0.05; 0: as trained).",
    ),
) -> None:
    """Draw true and predicted steering wheels over the camera video (H.264)."""
    from steertime.evaluate.render import render as render_video
    from steertime.stream import Predictor
    from steertime.stream.run import load_source

    options = read_options(DEFAULT_MAX_GAP_S, False, mapping, map, camera=camera)
    drives = load_source(source, format, options)
    p = Predictor.from_run(run, threads=threads, adapt_gamma=adapt_gamma)
    with progress("render", sum(len(d) for d in drives)) as advance:
        render_video(p, drives, out, output=output, progress=advance, heldout_from=p.meta.data_path)
    console.print(f"wrote {out}")
