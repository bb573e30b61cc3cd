"""`steertime evaluate`: a model streaming over held-out drives, against baselines.

The model runs as it would in the car — state carried from the start of each segment —
and is scored next to predict-zero, predict-the-training-mean and any other runs, all on
the same frames.

Every model is scored against the log at the same frame, as the challenges score. A run
trained with `data.lead=L` learned the log L frames later (the driver's command without
their reaction delay), so it is also scored against that target (`rmse_vs_trained_target`,
and with a spread `coverage90_vs_trained_target`, the target its spread was calibrated
on): the first number compares runs, the second says how well a led run learned what it
was taught.

With camera faults (`faults="blackout:0.5@10"`, on a cache), every model sees the same
faulted frames (the schedule is drawn from `fault_seed` and the segment, not the model);
a model trained with the frame-missing flag carries on from memory, any other holds its
last output. Each output then also gets `rmse_fault` and `rmse_clean`: the frames inside
a fault event against the rest (`fault_frames` counts them) — and `rmse_fault_sighted`,
the same run on the same fault frames when it is shown them: what blindness costs it, and
a reference a blind model is unlikely to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from steertime.data import Cache, ReadOptions
from steertime.data.faults import FaultSpec, fault_schedule, parse_faults
from steertime.data.lead import lead_rows
from steertime.data.resolve import CACHE, RECORDING, resolve
from steertime.data.splits import session_of
from steertime.errors import SteertimeError
from steertime.evaluate import metrics as M
from steertime.evaluate.cost import training_cost
from steertime.models import OutputLayout
from steertime.models.checkpoint import load_model
from steertime.stream.adaptive import DEFAULT_GAMMA, adaptive_scales
from steertime.stream.segments import predict_segment
from steertime.stream.threads import DEFAULT_THREADS, torch_threads

MAX_LAG_S = 1.0
COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)  # central intervals scored in metrics.json


@dataclass
class Frames:
    """The evaluated frames, in order: time, drive label, truth (N, K) per output name."""

    t: np.ndarray
    drive: np.ndarray
    truth: dict[str, np.ndarray]
    units: dict[str, dict]
    rate_hz: float
    preds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> name -> (N,)
    leads: dict[str, int] = field(default_factory=dict)  # model -> data.lead it trained with
    # lead -> name -> (N,): the log `lead` frames later, the target a led run was taught
    truth_led: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    fault: np.ndarray | None = None  # (N,) camera fault codes when evaluated with faults
    # model -> name -> (N,) predicted standard deviation (runs trained with `train.spread`)
    spreads: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # model -> name -> (N,): with faults, the same run's predictions without them
    sighted: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # model -> name -> (N,): `spreads` recalibrated online (`recalibrate_online`), and the
    # step it used; empty / 0 when not asked for
    online_spreads: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    adapt_gamma: float = 0.0

    def merge(self, other: Frames) -> None:
        """Add another run's predictions on the same frames."""
        self.preds.update(other.preds)
        self.spreads.update(other.spreads)
        self.sighted.update(other.sighted)
        self.leads.update(other.leads)
        self.truth_led.update(other.truth_led)

    def recalibrate_online(self, gamma: float) -> None:
        """Fill `online_spreads` for every spread of every model (once, for the metrics,
        the table and the plot alike); gamma 0 leaves them empty."""
        self.adapt_gamma = gamma
        self.online_spreads = (
            {
                m: {n: adaptive_spread(self, m, n, gamma) for n in sp}
                for m, sp in self.spreads.items()
            }
            if gamma > 0
            else {}
        )

    def calibration_target(self, model: str, name: str) -> np.ndarray:
        """(N,) what `model`'s spread was calibrated against: the log `data.lead` frames
        later for a led run, else the log at the same frame."""
        lead = self.leads.get(model, 0)
        return self.truth_led[lead][name] if lead else self.truth[name]


def led_within_drives(values: np.ndarray, drive: np.ndarray, lead: int) -> np.ndarray:
    """`values` read `lead` frames later within each drive label, clamped at its last frame
    (`lead_rows`, as training reads its targets: a raw recording's drives are evaluated
    whole, so their ends are the drives' ends)."""
    out = np.empty_like(values)
    for name in dict.fromkeys(drive):
        idx = np.flatnonzero(drive == name)
        out[idx] = values[idx[lead_rows(0, len(idx), lead, len(idx))]]
    return out


def _cache_truth(cache: Cache, segs: list, lead: int = 0) -> dict[str, np.ndarray]:
    """Every signal on the segments' frames, read `lead` frames later exactly as training
    and validation read targets (clamped at the drive's end, not the segment's)."""
    out: dict[str, list] = {n: [] for n in cache.signal_names()}
    for s in segs:
        d = cache.drives[s.drive]
        rows = lead_rows(s.start, s.stop, lead, d.n)
        for n in out:
            out[n].append(d.signals[n][rows])
    return {n: np.concatenate(v) for n, v in out.items()}


def _run_name(run: Path) -> str:
    return Path(run).resolve().name


def run_names(runs: list[Path]) -> list[str]:
    """Each run's name in tables and columns: its folder's name, with as many parent
    folders as it takes to tell apart runs of the same name (`a/cnn_lstm`, `b/cnn_lstm`).
    The same run given twice is refused: it would be scored against itself."""
    paths = [Path(r).resolve() for r in runs]
    seen: dict[Path, int] = {}
    for i, p in enumerate(paths):
        if p in seen:
            raise SteertimeError(f"{runs[i]}: given twice (also as {runs[seen[p]]})")
        seen[p] = i
    depth = [1] * len(paths)
    while True:
        names = ["/".join(p.parts[-d:]) for p, d in zip(paths, depth, strict=True)]
        clash = {n for n in names if names.count(n) > 1}
        if not clash:
            return names
        depth = [d + (n in clash) for d, n in zip(depth, names, strict=True)]


def segment_faults(seg, rate_hz: float, faults: list[FaultSpec], seed: int) -> np.ndarray | None:
    """The fault codes of one segment's frames: the same for every model scored."""
    if not faults:
        return None
    rng = np.random.default_rng([seed, seg.drive, seg.start])
    return fault_schedule(len(seg), rate_hz or 10.0, faults, rng)


def predict_on_cache(
    run: Path,
    cache: Cache,
    split: str | None,
    threads: int = DEFAULT_THREADS,
    faults: list[FaultSpec] = (),
    fault_seed: int = 0,
    name: str | None = None,
) -> tuple[Frames, OutputLayout]:
    """`run` streaming over `split` of `cache`; its predictions keyed by `name` (default:
    the run folder's name)."""
    name = name or _run_name(run)
    model, meta = load_model(run)
    layout = meta.layout
    segs = cache.segments(split) if split else cache.segments()
    if not segs:
        raise SteertimeError(f"{cache.path}: split {split!r} is empty")
    ts, drives, preds, codes, spreads = [], [], [], [], []
    for s in segs:
        d = cache.drives[s.drive]
        rate = float(cache.manifest["drives"][s.drive].get("rate_hz") or 0.0)
        c = segment_faults(s, rate, list(faults), fault_seed)
        with torch_threads(threads):
            y = predict_segment(
                model, cache, s, torch.device("cpu"), faults=c, fault_seed=fault_seed
            )
        preds.append(layout.denormalize(y))
        if layout.spread:
            spreads.append(layout.spread_of(y))
        if c is not None:
            codes.append(c)
        ts.append(d.timestamps[s.start : s.stop])
        drives += [f"{d.name}[{s.start}:{s.stop}]"] * len(s)
    p = np.concatenate(preds)
    t = np.concatenate(ts)
    frames = Frames(
        t=t,
        drive=np.asarray(drives),
        truth=_cache_truth(cache, segs),
        units={n: u.to_dict() for n, u in cache.drives[0].units.items()},
        rate_hz=float(np.median([e["rate_hz"] for e in cache.manifest["drives"]])),
        fault=np.concatenate(codes) if codes else None,
    )
    frames.preds[name] = {n: p[:, k] for k, n in enumerate(layout.names)}
    if spreads:
        sd = np.concatenate(spreads)
        frames.spreads[name] = {n: sd[:, k] for k, n in enumerate(layout.names)}
    lead = frames.leads[name] = meta.lead
    if lead:
        frames.truth_led[lead] = _cache_truth(cache, segs, lead)
    return frames, layout


def predict_on_path(
    run: Path,
    path: Path,
    format: str | None,
    options: ReadOptions | None,
    threads: int = DEFAULT_THREADS,
    name: str | None = None,
):
    """A raw recording: the streaming predictor over every drive with frames."""
    name = name or _run_name(run)
    from steertime.stream import Predictor
    from steertime.stream.run import load_source, predict_drives

    p = Predictor.from_run(run, threads=threads)
    drives = load_source(path, format, options)
    df = predict_drives(p, drives)
    ok = df["status"] != "skipped"
    df = df[ok]
    truth = {n: df[f"true_{n}"].to_numpy() for n in p.layout.names if f"true_{n}" in df}
    units = {n: u.to_dict() for n, u in drives[0].units.items()}
    frames = Frames(
        t=df["t"].to_numpy(),
        drive=df["drive"].to_numpy(),
        truth=truth,
        units=units,
        rate_hz=float(np.median([d.rate_hz for d in drives])),
    )
    frames.preds[name] = {n: df[n].to_numpy() for n in p.layout.names}
    if p.layout.spread:
        frames.spreads[name] = {n: df[f"{n}_std"].to_numpy() for n in p.layout.names}
    lead = frames.leads[name] = p.meta.lead
    if lead:
        frames.truth_led[lead] = {
            n: led_within_drives(v, frames.drive, lead) for n, v in truth.items()
        }
    return frames, p.layout


FLAT = 0.05  # prediction std below this share of the truth's: too flat to have a lag


def _block(frames: Frames) -> int:
    """The bootstrap block in frames: `metrics.BLOCK_S` seconds at the frames' rate."""
    return max(2, int(round(M.BLOCK_S * frames.rate_hz)))


def _score(pred: np.ndarray, true: np.ndarray, frames: Frames, name: str, scale: float) -> dict:
    block = _block(frames)
    err = pred - true
    unit = frames.units.get(name, {})
    out = {
        "rmse": M.rmse(pred, true),
        "mae": M.mae(pred, true),
        "r2": M.r2(pred, true),
        "rmse_ci95": list(M.block_bootstrap_rmse(err, block, groups=frames.drive)),
    }
    if unit.get("to_radians"):
        f = unit["to_radians"]
        out["rmse_rad"] = out["rmse"] * f
        out["rmse_rad_ci95"] = [c * f for c in out["rmse_ci95"]]
    # Temporal quality, per drive then pooled: lag and smoothness
    lags, rates_p, rates_t = [], [], []
    for dname in dict.fromkeys(frames.drive):
        m = frames.drive == dname
        if m.sum() > 4:
            lags.append(M.best_lag(pred[m], true[m], int(MAX_LAG_S * frames.rate_hz)))
            rates_p.append(M.mean_abs_rate(pred[m], frames.t[m]))
            rates_t.append(M.mean_abs_rate(true[m], frames.t[m]))
    # A constant prediction has no lag to speak of, and one that barely moves (a model
    # that learned the mean) only has the lag of its noise: report none (NaN, shown "–").
    moves = np.std(pred) > FLAT * np.std(true)
    lag = float(np.median(lags)) if lags and moves else float("nan")
    out["lag_frames"] = lag
    out["lag_s"] = lag / frames.rate_hz
    out["rate"] = float(np.mean(rates_p)) if rates_p else 0.0
    out["rate_ratio_to_driver"] = out["rate"] / max(
        float(np.mean(rates_t)) if rates_t else 0.0, 1e-12
    )
    # |truth| buckets (straight / gentle / sharp) mean something for a signal centred on
    # zero, like steering; for speed every frame would be "sharp" and the rest empty.
    if len(true) and np.min(true) < 0 < np.max(true):
        out["by_magnitude"] = M.error_by_magnitude(pred, true, scale)
    return out


def score(frames: Frames, layout: OutputLayout) -> dict:
    """Metrics for every model in `frames.preds` and the reference predictors (with
    `frames.online_spreads`, their coverage beside the static one)."""
    result: dict = {
        "frames": int(len(frames.t)),
        "drives": sorted(set(frames.drive.tolist())),
        "outputs": {},
    }
    primary = next(iter(frames.preds))
    for k, name in enumerate(layout.names):
        if name not in frames.truth:
            continue
        true = frames.truth[name]
        refs = {
            "predict_zero": np.zeros_like(true),
            "predict_mean": np.full_like(true, layout.mean[k]),
        }
        models = {m: p[name] for m, p in frames.preds.items() if name in p}
        entry = {"unit": frames.units.get(name, {}), "models": {}}
        for m, pred in {**models, **refs}.items():
            entry["models"][m] = _score(pred, true, frames, name, layout.std[k])
            if frames.fault is not None:
                bad = frames.fault != 0
                entry["models"][m]["rmse_fault"] = (
                    M.rmse(pred[bad], true[bad]) if bad.any() else float("nan")
                )
                entry["models"][m]["rmse_clean"] = M.rmse(pred[~bad], true[~bad])
                if bad.any() and (seen := frames.sighted.get(m, {}).get(name)) is not None:
                    entry["models"][m]["rmse_fault_sighted"] = M.rmse(seen[bad], true[bad])
            if (sd := frames.spreads.get(m, {}).get(name)) is not None:
                # How often the truth falls in the predicted 90% interval (calibrated on
                # validation at training time: 0.90 when the spread is honest).
                entry["models"][m]["coverage90"] = M.interval_coverage(pred, true, sd, 0.9)
                entry["models"][m]["mean_spread"] = float(np.mean(sd))
                # The whole reliability curve, against the target the spread was fitted to.
                target = frames.calibration_target(m, name)
                entry["models"][m]["coverage"] = {
                    f"{p:g}": M.interval_coverage(pred, target, sd, p) for p in COVERAGE_LEVELS
                }
                if (online := frames.online_spreads.get(m, {}).get(name)) is not None:
                    entry["models"][m].update(
                        coverage90_adaptive=M.interval_coverage(pred, target, online, 0.9),
                        mean_spread_adaptive=float(np.mean(online)),
                        adapt_gamma=frames.adapt_gamma,
                    )
            if lead := frames.leads.get(m, 0):
                entry["models"][m]["lead_frames"] = lead
                target = frames.truth_led[lead][name]
                entry["models"][m]["rmse_vs_trained_target"] = M.rmse(pred, target)
                if sd is not None:  # the spread was calibrated against this target
                    cov = entry["models"][m]["coverage"]["0.9"]
                    entry["models"][m]["coverage90_vs_trained_target"] = cov
        block = _block(frames)
        entry["diff_ci95_vs_primary"] = {
            m: list(
                M.block_bootstrap_diff(
                    pred - true, models[primary] - true, block, groups=frames.drive
                )
            )
            for m, pred in {**models, **refs}.items()
            if m != primary
        }
        result["outputs"][name] = entry
    result["primary"] = primary
    if frames.fault is not None:
        result["fault_frames"] = int(np.count_nonzero(frames.fault))
    return result


def adaptive_spread(frames: Frames, model: str, name: str, gamma: float) -> np.ndarray:
    """(N,) `model`'s spread recalibrated online from the outcomes already seen, as a car
    that measures the output (or a human driver's command) would: each drive starts from
    the validation calibration, and a led run learns each outcome `data.lead` frames late."""
    pred, sd = frames.preds[model][name], frames.spreads[model][name]
    target = frames.calibration_target(model, name)
    starts = np.r_[True, frames.drive[1:] != frames.drive[:-1]]
    lead = frames.leads.get(model, 0)
    return sd * adaptive_scales(pred, target, sd, starts, gamma, level=0.9, delay=lead)


def evaluate(
    run: str | Path,
    data: str | Path,
    split: str | None = "test",
    compare: list[str | Path] = (),
    format: str | None = None,
    options: ReadOptions | None = None,
    threads: int = DEFAULT_THREADS,
    faults: str | None = None,
    fault_seed: int = 0,
    adapt_gamma: float = DEFAULT_GAMMA,
) -> tuple[dict, Frames, OutputLayout]:
    """Predict with `run` (and every `compare` run) on the same frames and score them all
    (`threads`: intra-op threads for inference, see `steertime.stream.threads`).
    `faults`: camera faults drawn over the frames (a cache only), see the module doc.
    `adapt_gamma`: step of the online spread recalibration scored beside the static one."""
    run = Path(run)
    runs = [run, *map(Path, compare)]
    names = run_names(runs)
    fault_specs = parse_faults(faults)
    src = resolve(data, format, options, accept=(CACHE, RECORDING))
    data = src.path
    if fault_specs and src.kind != CACHE:
        raise SteertimeError(f"{data}: --faults needs a prepared cache (steertime prepare)")
    if src.kind == CACHE:
        cache = Cache.open(data)
        fk = {"faults": fault_specs, "fault_seed": fault_seed}
        frames, layout = predict_on_cache(run, cache, split, threads, **fk, name=names[0])
        for other, name in zip(runs[1:], names[1:], strict=True):
            f2, _ = predict_on_cache(other, cache, split, threads, **fk, name=name)
            frames.merge(f2)
        if fault_specs:  # each run again, shown every frame
            for r, name in zip(runs, names, strict=True):
                seen, _ = predict_on_cache(r, cache, split, threads, name=name)
                frames.sighted.update(seen.preds)
        segs = cache.segments(split) if split else cache.segments()
        source = {
            "cache": str(data),
            "split": split,
            "split_mode": cache.manifest["splits"]["config"]["mode"],
            # the sessions scored: with --split session, the ones the model never saw
            "sessions": sorted({session_of(cache.drives[s.drive].name) for s in segs}),
            "content_hash": cache.content_hash,
        }
        if fault_specs:
            source["faults"] = ",".join(map(str, fault_specs))
            source["fault_seed"] = fault_seed
    else:
        frames, layout = predict_on_path(run, data, src.format, options, threads, names[0])
        for other, name in zip(runs[1:], names[1:], strict=True):
            f2, _ = predict_on_path(other, data, src.format, options, threads, name)
            frames.merge(f2)
        source = {"path": str(data), "format": src.format, "split": None}
    frames.recalibrate_online(adapt_gamma)
    result = score(frames, layout)
    result = {"run": str(run), "data": source, "duration_s": _duration(frames), **result}
    costs = {name: training_cost(r) for r, name in zip(runs, names, strict=True)}
    if any(costs.values()):
        result["training"] = {k: v for k, v in costs.items() if v}
    return result, frames, layout


def _duration(frames: Frames) -> float:
    total = 0.0
    for dname in dict.fromkeys(frames.drive):
        t = frames.t[frames.drive == dname]
        total += float(t[-1] - t[0]) if len(t) > 1 else 0.0
    return total
