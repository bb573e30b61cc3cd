"""A self-contained HTML report: config, data, metrics vs baselines, plots (embedded)."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

from steertime.atomic import write_text
from steertime.evaluate.verdict import verdicts


def _img(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "–"
    if isinstance(v, list):
        return html.escape(", ".join(map(str, v)))
    return html.escape(str(v))


def metrics_table(result: dict, name: str) -> str:
    entry = result["outputs"][name]
    rad = any("rmse_rad" in m for m in entry["models"].values())
    faulty = any("rmse_fault" in m for m in entry["models"].values())
    head = [
        "model",
        "RMSE",
        "95% CI",
        *(["RMSE rad"] if rad else []),
        *(["RMSE in faults", "RMSE in faults if shown", "RMSE clean"] if faulty else []),
        "MAE",
        "R²",
        "lag s",
        "rate / driver",
        f"RMSE − {result['primary']} (paired 95% CI)",
    ]
    diffs = entry.get("diff_ci95_vs_primary", {})
    primary_rmse = entry["models"][result["primary"]]["rmse"]
    rows = []
    for model, m in sorted(entry["models"].items(), key=lambda kv: kv[1]["rmse"]):
        lo, hi = m["rmse_ci95"]
        ci = f"{lo:.4g} – {hi:.4g}" if math.isfinite(lo) else "– (too few frames)"
        cells = [model, m["rmse"], ci]
        if rad:
            cells.append(m.get("rmse_rad", ""))
        if faulty:
            cells += [
                m.get("rmse_fault", ""),
                m.get("rmse_fault_sighted", ""),
                m.get("rmse_clean", ""),
            ]
        cells += [m["mae"], m["r2"], m["lag_s"], m["rate_ratio_to_driver"]]
        if model in diffs and all(math.isfinite(c) for c in diffs[model]):
            lo, hi = diffs[model]
            cells.append(f"{m['rmse'] - primary_rmse:+.3g} [{lo:+.3g}, {hi:+.3g}]")
        else:
            cells.append("")
        cls = ' class="primary"' if model == result["primary"] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
    # only for signals centred on zero (steering), and only buckets with frames in them
    buckets = entry["models"][result["primary"]].get("by_magnitude", {})
    btable = "".join(
        f"<tr><td>{b}</td><td>{v['range']}</td><td>{v['frames']}</td><td>{_fmt(v['rmse'])}</td></tr>"
        for b, v in buckets.items()
        if v["frames"]
    )
    unit = entry["unit"].get("name", "")
    primary = html.escape(result["primary"])
    led = "".join(
        f"<p class='led'><b>{html.escape(model)}</b> was trained on the log {m['lead_frames']} "
        f"frames later (<code>data.lead</code>); scored against that target its RMSE is "
        f"{_fmt(m['rmse_vs_trained_target'])}"
        + (
            f" and its 90% interval covers {m['coverage90_vs_trained_target']:.1%} of it"
            if "coverage90_vs_trained_target" in m
            else ""
        )
        + " (the table scores every model against the same frame).</p>"
        for model, m in entry["models"].items()
        if m.get("lead_frames")
    )
    return (
        f"<h2>{html.escape(name)} <small>({html.escape(unit)})</small></h2>"
        f'<table class="metrics" id="metrics-{html.escape(name)}"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + led
        + (
            f"<p>Error of <b>{primary}</b> by |truth| (straight vs curves):</p>"
            "<table><tr><th>bucket</th><th>|truth|</th><th>frames</th><th>RMSE</th></tr>"
            + btable
            + "</table>"
            if btable
            else ""
        )
    )


def training_table(result: dict) -> str:
    """What each run cost to train (`evaluate.cost`): seconds beside the errors above."""
    costs = result.get("training", {})
    if not costs:
        return ""
    head = ["run", "kept", "epochs", "kept model on disk after", "trained"]
    rows = [
        [
            name,
            c["kept"],
            c.get("epochs", c.get("members", "")),
            f"{c['kept_at_s']:.0f} s" if c.get("kept_at_s") is not None else "–",
            f"{c['trained_s']:.0f} s" if c.get("trained_s") is not None else "–",
        ]
        for name, c in costs.items()
    ]
    return (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
        + "</table>"
    )


def verdict_section(result: dict) -> str:
    """The answer first: best model per output, by how much, and whether it is any good."""
    items = "".join(
        f"<li class='{'ok' if v.ok else 'warn'}'>{html.escape(v.text)}</li>"
        for v in verdicts(result)
    )
    return f"<h2>Verdict</h2><ul class='verdict' id='verdict'>{items}</ul>" if items else ""


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}tr.primary{font-weight:bold}
img{max-width:100%;display:block;margin:.5em 0}pre{background:#f7f7f7;padding:1em;overflow:auto}
ul.verdict li{margin:.3em 0;padding:.3em .6em;border-left:4px solid #2a8}
ul.verdict li.warn{border-left-color:#d80;background:#fff6e5}
"""


def write_report(
    out: Path,
    result: dict,
    images: dict[str, list[Path]],
    config_text: str,
    sections: Sequence[str] = (),
) -> Path:
    """The evaluation report; `sections` (HTML, each opening with its `<h2>`) go after the
    metrics and plots, before the run configuration."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>steertime evaluation: {html.escape(result['primary'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Evaluation of {html.escape(result['primary'])}</h1>",
        verdict_section(result),
        "<h2>Data</h2><table>",
        *(
            f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
            for k, v in result["data"].items()
        ),
        f"<tr><th>frames</th><td>{result['frames']}</td></tr>",
        f"<tr><th>duration</th><td>{result['duration_s']:.1f} s</td></tr>",
        f"<tr><th>segments</th><td>{len(result['drives'])}</td></tr></table>",
        "<p>The model runs streaming (state carried from the start of each segment). "
        "Confidence intervals: 95%, block bootstrap over 2 s blocks. Lag: the shift that best "
        "aligns prediction and truth (positive: prediction late). Rate / driver: mean "
        "|d/dt| of the prediction over the driver's (1 = as smooth as the driver); "
        "– where the prediction is (nearly) constant. Paired CI: the blocks resampled "
        "jointly for both models; if it excludes 0 the difference is real on this data.</p>",
    ]
    for name in result["outputs"]:
        parts.append(metrics_table(result, name))
        parts += [_img(p) for p in images.get(name, [])]
    if images.get("training") or result.get("training"):
        parts.append("<h2>Training</h2>" + training_table(result))
        parts += [_img(p) for p in images.get("training", [])]
    parts += sections
    parts += [
        "<h2>Run configuration</h2><pre>",
        html.escape(config_text),
        "</pre>",
        "<h2>metrics.json</h2><details><summary>raw</summary><pre>",
        html.escape(json.dumps(result, indent=1)),
        "</pre></details></body></html>",
    ]
    write_text(out, "\n".join(parts))
    return out
