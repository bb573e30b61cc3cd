"""`steertime` commands: why a network does or does not learn (gradient flow, the memory task)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from steertime import data
from steertime.cli.app import app, console


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
    cells: str = typer.Option("rnn,lstm", help="Cells to compare: rnn, gru, lstm, tcn, attn."),
    steps: int = typer.Option(400, help="Training steps per cell and gap."),
) -> None:
    """Long-term dependencies, measured: can each cell carry a cue over the gap?"""
    from steertime.diagnostics import memory_task

    t = Table("cell", *[f"gap {g}" for g in gaps.split(",")], title="accuracy (0.5 = chance)")
    for cell in cells.split(","):
        accs = [memory_task(cell, int(g), steps=steps).accuracy for g in gaps.split(",")]
        t.add_row(cell, *[f"{a:.2f}" for a in accs])
    console.print(t)
