"""The closed-loop drive summary both `drive` commands print (the built-in simulator's
and Duckietown's): one table row per road, then the autonomy line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

from steertime.cli.app import console


def print_drive_summary(
    s: Mapping[str, Any],
    lead: Sequence[str],
    lead_cells: Iterable[Sequence[str]],
    *,
    rate: str,
    per_km: bool,
    max_offset_digits: int,
) -> None:
    """Print a `DriveReport.summary()` `s`.

    `lead` heads the columns before interventions and offsets and `lead_cells` fills them,
    one row per road in `s["per_road"]` order; `rate` ends the autonomy line (steering
    rate and distance, each simulator in its own units); `per_km` adds interventions/km."""
    t = Table(*lead, "interventions", "mean |offset| m", "max |offset| m")
    for cells, r in zip(lead_cells, s["per_road"], strict=True):
        t.add_row(
            *cells,
            str(r["interventions"]),
            f"{r['mean_abs_offset']:.3f}",
            f"{r['max_abs_offset']:.{max_offset_digits}f}",
        )
    console.print(t)
    lo, hi = s["autonomy_ci95_pct"]
    per = f" ({s['interventions_per_km']:.2f}/km)" if per_km else ""
    console.print(
        f"autonomy {s['autonomy_pct']:.2f}% (95% CI {lo:.1f}–{hi:.1f}%)  "
        f"interventions {s['interventions']}{per}  "
        f"mean |offset| {s['mean_abs_offset_m']:.3f} m  {rate}"
    )
