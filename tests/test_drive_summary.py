"""The drive summary shared by `steertime drive` and `steertime duckietown drive`
(the latter's CLI test needs the Duckietown venv, so its printing is pinned here)."""

from __future__ import annotations

from steertime.cli.drive_summary import print_drive_summary

SUMMARY = {
    "km": 3.456,
    "interventions": 3,
    "autonomy_pct": 92.5,
    "autonomy_ci95_pct": [85.25, 98.75],
    "interventions_per_km": 0.868,
    "mean_abs_offset_m": 0.12345,
    "mean_abs_wheel_rate_degps": 12.345,
    "per_road": [
        {
            "seed": 1001,
            "seconds": 120.4,
            "interventions": 1,
            "mean_abs_offset": 0.1234,
            "max_abs_offset": 0.98765,
        },
        {
            "seed": 1002,
            "seconds": 119.6,
            "interventions": 2,
            "mean_abs_offset": 0.2345,
            "max_abs_offset": 1.23456,
        },
    ],
}


def test_sim_style_summary(capsys):
    s = SUMMARY
    print_drive_summary(
        s,
        ("road", "seconds"),
        [(str(r["seed"]), f"{r['seconds']:.0f}") for r in s["per_road"]],
        rate="|wheel rate| 12.3 deg/s over 3.5 km",
        per_km=True,
        max_offset_digits=2,
    )
    out = capsys.readouterr().out
    assert "road" in out and "max |offset| m" in out and "0.99" in out and "0.988" not in out
    assert (
        "autonomy 92.50% (95% CI 85.2–98.8%)  interventions 3 (0.87/km)  "
        "mean |offset| 0.123 m  |wheel rate| 12.3 deg/s over 3.5 km"
    ) in out


def test_duckietown_style_summary(capsys):
    s = SUMMARY
    print_drive_summary(
        s,
        ("episode", "map"),
        [(str(r["seed"]), m) for m, r in zip(("udem1", "loop_empty"), s["per_road"], strict=True)],
        rate="|omega rate| 12.35/s over 3456 m",
        per_km=False,
        max_offset_digits=3,
    )
    out = capsys.readouterr().out
    assert "loop_empty" in out and "0.988" in out and "1.235" in out
    assert (
        "autonomy 92.50% (95% CI 85.2–98.8%)  interventions 3  "
        "mean |offset| 0.123 m  |omega rate| 12.35/s over 3456 m"
    ) in out
