"""`steertime ensemble`: several trained runs averaged into one run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from steertime.cli.app import app, console


@app.command()
def ensemble(
    runs: list[Path] = typer.Argument(..., help="Two or more trained run folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write the ensemble to."),
    overwrite: bool = typer.Option(False, help="Replace a run already in --out."),
    weights: str = typer.Option(
        "", help="Comma-separated weight per run, e.g. 3,1,1,1 (default: equal)."
    ),
) -> None:
    """Average trained runs (other seeds, other families) into one run.

    `predict`, `evaluate`, `export` and the Donkeycar part use it like any other run."""
    from steertime.models.checkpoint import read_run_meta
    from steertime.models.ensemble import build_ensemble

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise typer.BadParameter(
            f"--weights must be numbers separated by commas: {weights!r}"
        ) from None
    folder = build_ensemble(runs, out, overwrite=overwrite, weights=w)
    meta = read_run_meta(folder)
    names = ", ".join(
        f"{m['model']} ({Path(m['run']).name}, weight {m.get('weight', 1):g})"
        for m in meta["members"]
    )
    console.print(f"wrote {folder}: {len(runs)} members: {names}")
