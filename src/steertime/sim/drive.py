"""`steertime drive`: a trained model in the loop. Its steering (and speed, if it predicts
speed) moves the car; leaving the lane counts an intervention and puts the car back on
the lane centre. Autonomy as in NVIDIA's PilotNet paper: 1 − interventions·6 s / time.

With `faults` the camera misbehaves on a schedule (`steertime.data.faults`): dropped
frames reach the predictor as `step(None, t)`, the others as the faulty image, and the
predictor's fault gate decides what counts as missing. Each road reports how long it was
faulty and how many interventions fell inside a fault or within `FAULT_AFTER_S` of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from steertime.data.faults import FaultSpec, FaultyCamera, fault_schedule, fault_windows
from steertime.errors import SteertimeError
from steertime.models.layout import Z90
from steertime.sim.camera import CameraSpec
from steertime.sim.expert import ExpertParams, speed_control, target_speed
from steertime.sim.world import FPS, World
from steertime.stream.predictor import StreamingPredictor, tell_truth

INTERVENTION_S = 6.0  # the PilotNet paper's time charged per intervention
OFFSET_LIMIT = 1.0  # m from the lane centre: beyond this a safety driver would take over
TAKEOVER_LEAD_S = 2.0  # a takeover request counts if it comes this long before leaving the lane
FAULT_AFTER_S = 2.0  # an intervention this soon after a fault ends is charged to the fault


@dataclass
class RoadResult:
    seed: int
    seconds: float
    metres: float
    interventions: int
    mean_abs_offset: float
    max_abs_offset: float
    mean_abs_wheel_rate: float  # deg/s: steering smoothness
    fault_seconds: float = 0.0  # time the camera was faulty (drives with `faults`)
    fault_interventions: int = 0  # interventions inside a fault or FAULT_AFTER_S after it
    # RMSE of the model's `torque` output against the car's steering torque (N·m), when
    # the model predicts torque; the sim's torque follows the model's own steering
    torque_rmse: float | None = None
    # With a `Takeover` rule: how often the model asked for the driver (steering spread
    # above the threshold; runs trained with `train.spread`), and how that compares with
    # the interventions that came: warned = a request within TAKEOVER_LEAD_S before it;
    # false = a request not followed by an intervention within TAKEOVER_LEAD_S.
    takeover_requests: int = 0
    warned_interventions: int = 0
    false_requests: int = 0
    # Runs with a spread, for the outputs the car measures itself (MEASURED): frames
    # scored and frames whose truth fell inside the 90% interval. With an `adapt_gamma`
    # predictor the car also reports each measurement back (`observe`), so the interval
    # recalibrates as it drives.
    interval_frames: dict[str, int] = field(default_factory=dict)
    interval_covered: dict[str, int] = field(default_factory=dict)
    interval_spread_sum: dict[str, float] = field(default_factory=dict)  # of the spreads


@dataclass
class DriveReport:
    roads: list[RoadResult] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.roads)

    @property
    def interventions(self) -> int:
        return sum(r.interventions for r in self.roads)

    @property
    def autonomy(self) -> float:
        return float(autonomy_fraction(np.float64(self.interventions), np.float64(self.seconds)))

    def summary(self) -> dict:
        km = sum(r.metres for r in self.roads) / 1000
        n = sum(r.seconds for r in self.roads)
        lo, hi = autonomy_interval(self.roads)
        return {
            "roads": len(self.roads),
            "minutes": self.seconds / 60,
            "km": km,
            "interventions": self.interventions,
            "autonomy_pct": 100 * self.autonomy,
            "autonomy_ci95_pct": [100 * lo, 100 * hi],
            "interventions_per_km": self.interventions / max(km, 1e-9),
            "mean_abs_offset_m": sum(r.mean_abs_offset * r.seconds for r in self.roads)
            / max(n, 1e-9),
            "mean_abs_wheel_rate_degps": sum(r.mean_abs_wheel_rate * r.seconds for r in self.roads)
            / max(n, 1e-9),
            "fault_minutes": sum(r.fault_seconds for r in self.roads) / 60,
            "fault_interventions": sum(r.fault_interventions for r in self.roads),
            "torque_rmse_nm": _pooled_rmse(self.roads),
            "takeover_requests": sum(r.takeover_requests for r in self.roads),
            "warned_interventions": sum(r.warned_interventions for r in self.roads),
            "false_requests": sum(r.false_requests for r in self.roads),
            "coverage90_measured": _pooled(self.roads, "interval_covered"),
            "mean_spread_measured": _pooled(self.roads, "interval_spread_sum"),
            "per_road": [asdict(r) for r in self.roads],
        }


def _pooled_rmse(roads: Sequence[RoadResult]) -> float | None:
    """Torque RMSE over all roads' frames (each road weighted by its time)."""
    have = [r for r in roads if r.torque_rmse is not None]
    if not have:
        return None
    t = sum(r.seconds for r in have)
    return math.sqrt(sum(r.torque_rmse**2 * r.seconds for r in have) / max(t, 1e-9))


def _pooled(roads: Sequence[RoadResult], field_: str) -> dict[str, float]:
    """Per measured output, a per-frame count or sum over all roads over their frames:
    the share covered by the 90% interval, or the mean spread."""
    names = dict.fromkeys(n for r in roads for n in r.interval_frames)
    return {
        n: sum(getattr(r, field_).get(n, 0) for r in roads)
        / max(sum(r.interval_frames.get(n, 0) for r in roads), 1)
        for n in names
    }


def autonomy_fraction(interventions: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """1 − interventions · 6 s / seconds, floored at 0 (arrays: one per resample)."""
    return np.maximum(0.0, 1.0 - interventions * INTERVENTION_S / np.maximum(seconds, 1e-9))


def _per_road(roads: Sequence[RoadResult]) -> tuple[np.ndarray, np.ndarray]:
    """(interventions, seconds) per road, as float arrays for resampling."""
    k = np.array([r.interventions for r in roads], float)
    return k, np.array([r.seconds for r in roads], float)


def poisson_upper(k: int, level: float = 0.95) -> float:
    """Exact (Garwood) upper confidence bound of a Poisson mean after observing k events:
    the λ at which P(X ≤ k; λ) = (1 - level) / 2. 0 events → 3.69 at 95%."""
    tail = (1 - level) / 2

    def cdf(lam: float) -> float:
        return sum(math.exp(i * math.log(lam) - lam - math.lgamma(i + 1)) for i in range(k + 1))

    lo, hi = 0.0, k + 10.0 + 10 * math.sqrt(k + 1)
    for _ in range(100):  # cdf falls monotonically in λ
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > tail else (lo, mid)
    return hi


def autonomy_interval(
    roads: Sequence[RoadResult], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Confidence interval of autonomy (fractions), resampling whole roads.

    Interventions cluster on hard roads, so minutes of one road are not independent
    trials: the bootstrap draws roads. With few or no interventions the bootstrap
    collapses onto the observed value (0 of 0 resampled is still 0), so the lower end is
    also held at or below the one implied by the exact Poisson bound on the count:
    100% over 20 minutes only shows ≥ 98.2% at 95%."""
    if not roads:
        return (float("nan"), float("nan"))
    k, t = _per_road(roads)
    picks = np.random.default_rng(seed).integers(0, len(roads), (n_boot, len(roads)))
    boot = autonomy_fraction(k[picks].sum(1), t[picks].sum(1))
    a = (1 - level) / 2
    lo, hi = float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))
    poisson_lo = float(autonomy_fraction(np.float64(poisson_upper(int(k.sum()), level)), t.sum()))
    return min(lo, poisson_lo), hi


def autonomy_difference(
    a: Sequence[RoadResult], b: Sequence[RoadResult], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Autonomy of a minus b on the *same* roads (paired), with a 95% interval from
    resampling roads jointly: (difference, low, high), as fractions. An interval that
    contains 0 means the roads driven cannot tell the two models apart."""
    if len(a) != len(b) or any(x.seed != y.seed for x, y in zip(a, b, strict=True)):
        raise SteertimeError("autonomy_difference needs the two models' results on the same roads")
    (ka, ta), (kb, tb) = _per_road(a), _per_road(b)
    picks = np.random.default_rng(seed).integers(0, len(a), (n_boot, len(a)))
    d = autonomy_fraction(ka[picks].sum(1), ta[picks].sum(1)) - autonomy_fraction(
        kb[picks].sum(1), tb[picks].sum(1)
    )
    diff = float(autonomy_fraction(ka.sum(), ta.sum()) - autonomy_fraction(kb.sum(), tb.sum()))
    return diff, float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


class Driver(Protocol):
    """What a drive needs of its driver: any `StreamingPredictor`, or a stand-in (a
    scripted, constant or human-like driver) with the same two calls."""

    def reset(self) -> None: ...

    def step(self, frame: np.ndarray | None, t: float) -> dict: ...


def _restart(predictor: Driver) -> None:
    """Reset the model's memory after the car was put back on the road, keeping the
    spreads' online calibration: the scene jumped, the car and its sensors did not."""
    if isinstance(predictor, StreamingPredictor):
        predictor.reset(calibration=False)
    else:
        predictor.reset()


MEASURED = ("speed", "torque")  # outputs whose truth the car measures as it drives


def _score_intervals(
    predictor: Driver,
    out: dict,
    truth: dict[str, float],
    frames: dict[str, int],
    covered: dict[str, int],
    widths: dict[str, float],
) -> None:
    """Count whether each measured output's 90% interval held the truth, then (with an
    `adapt_gamma` predictor) report the truth back so the interval recalibrates."""
    names = [n for n in MEASURED if f"{n}_std" in out]
    for n in names:
        frames[n] = frames.get(n, 0) + 1
        covered[n] = covered.get(n, 0) + int(abs(out[n] - truth[n]) <= Z90 * out[f"{n}_std"])
        widths[n] = widths.get(n, 0.0) + out[f"{n}_std"]
    tell_truth(predictor, {n: truth[n] for n in names})


def speed_command(out: dict) -> float | None:
    """The model's speed command: its `target_speed` output, else its `speed` output.

    `speed` is the measured speed; a temporal model can read it off the motion and echo
    it, which in the loop holds the car at its current speed (Codevilla et al. 2019's
    inertia problem) — train on `target_speed` (recorded by `simulate`) to avoid that."""
    for name in ("target_speed", "speed"):
        if name in out:
            return out[name]
    return None


def drive_road(
    predictor: Driver,
    seed: int,
    seconds: float,
    fps: float = FPS,
    cam: CameraSpec | None = None,
    offset_limit: float = OFFSET_LIMIT,
    on_frame: Callable[[World, dict, np.ndarray, int], None] | None = None,
    faults: Sequence[FaultSpec] = (),
    takeover: Takeover | None = None,
    trace: list[RoadTrace] | None = None,
) -> RoadResult:
    """Drive one road; with `trace`, also append the road's per-step record to it."""
    cam = cam or CameraSpec(*(predictor.source_size or (160, 320)))
    world = World(seed, dt=1.0 / fps, cam=cam, noise_seed=seed)
    expert = ExpertParams()
    predictor.reset()
    interventions, offsets, rates, torque_err = 0, [], [], []
    start_s = world.s
    n_steps = int(round(seconds * fps))
    # the same road seed gives the same faults for every model: a paired comparison
    codes = fault_schedule(n_steps, fps, list(faults), np.random.default_rng([seed, 7]))
    camera = FaultyCamera(codes, seed)
    charged = fault_windows(codes, int(round(FAULT_AFTER_S * fps)))
    fault_hits = 0
    spreads, hit_steps = np.zeros(n_steps), []
    frames: dict[str, int] = {}
    covered: dict[str, int] = {}
    widths: dict[str, float] = {}
    for i in range(n_steps):
        clean = world.frame()
        frame, _ = camera(i, clean) if faults else (clean, 0)
        out = predictor.step(frame, world.t)
        spreads[i] = out.get("steering_std", 0.0)
        tel = world.telemetry()  # what the car measures at this frame, as simulate records it
        if "torque" in out:
            torque_err.append(out["torque"] - tel.torque)
        truth = {"speed": tel.speed, "torque": tel.torque}
        _score_intervals(predictor, out, truth, frames, covered, widths)
        if frame is None:  # what the video shows of a dropped frame
            frame = np.zeros_like(clean)
        v_target = speed_command(out)
        if v_target is None:
            v_target = target_speed(world.road, world.s, world.state.v, expert)
        throttle, brake = speed_control(world.state.v, v_target, expert.speed_gain)
        world.step(out["steering"], throttle, brake)
        offsets.append(abs(world.offset))
        rates.append(abs(world.state.wheel_rate))
        if on_frame:
            on_frame(world, out, frame, interventions)
        if abs(world.offset) > offset_limit:
            interventions += 1
            hit_steps.append(i)
            fault_hits += int(charged[i])
            world.place(world.s + 5.0)
            _restart(predictor)  # the scene jumped: the model's memory no longer fits it
        if world.at_end:
            break
    spreads = spreads[: len(offsets)]
    if trace is not None:
        trace.append(RoadTrace(seed, spreads.copy(), list(hit_steps)))
    return RoadResult(
        seed=seed,
        seconds=world.t,
        metres=world.s - start_s,
        interventions=interventions,
        mean_abs_offset=float(np.mean(offsets)),
        max_abs_offset=float(np.max(offsets)),
        mean_abs_wheel_rate=float(np.mean(rates)),
        fault_seconds=float(np.count_nonzero(codes[: len(offsets)])) / fps,
        fault_interventions=fault_hits,
        torque_rmse=float(np.sqrt(np.mean(np.square(torque_err)))) if torque_err else None,
        interval_frames=frames,
        interval_covered=covered,
        interval_spread_sum=widths,
        **takeover_counts(
            takeover.asking(spreads) if takeover else np.zeros(len(offsets), bool),
            hit_steps,
            int(round(TAKEOVER_LEAD_S * fps)),
        ),
    )


@dataclass
class RoadTrace:
    """What a takeover rule needs to be replayed on a road already driven: the steering
    spread at every step (0 without `train.spread`) and the steps that left the lane."""

    seed: int
    steering_std: np.ndarray  # (steps,)
    interventions: list[int]  # step indices


@dataclass(frozen=True)
class Takeover:
    """When a model asks the driver to take over: once its steering spread (`train.spread`)
    has stayed above `spread` for `hold` consecutive frames. A hold of a few frames lets a
    lone spike on a clean curve pass, at the price of asking `hold - 1` frames later."""

    spread: float
    hold: int = 1

    def __post_init__(self) -> None:
        if self.hold < 1:
            raise SteertimeError(f"takeover hold must be >= 1 frame, got {self.hold}")

    def asking(self, spreads: np.ndarray) -> np.ndarray:
        """(N,) steering spreads -> (N,) bool: frames on which the request stands."""
        return debounce(np.asarray(spreads) > self.spread, self.hold)

    def live(self) -> Callable[[float], bool]:
        """The same rule frame by frame, as the car (and `drive --video`) applies it: feed
        each step's steering spread, get whether the request stands."""
        run = 0

        def step(spread: float) -> bool:
            nonlocal run
            run = run + 1 if spread > self.spread else 0
            return run >= self.hold

        return step


def debounce(flag: np.ndarray, frames: int) -> np.ndarray:
    """True where `flag` has held for the last `frames` steps (itself when frames <= 1)."""
    flag = np.asarray(flag, bool)
    if frames <= 1:
        return flag
    idx = np.arange(len(flag))
    last_off = np.maximum.accumulate(np.where(flag, -1, idx))  # latest step without it
    return idx - last_off >= frames  # the length of the run ending at each step


def takeover_counts(asking: np.ndarray, hits: list[int], lead: int) -> dict:
    """Requests (runs of `asking`), interventions with a request within `lead` steps
    before them, and requests with no intervention during them or `lead` steps after."""
    starts = np.flatnonzero(asking & ~np.concatenate([[False], asking[:-1]]))
    ends = np.flatnonzero(asking & ~np.concatenate([asking[1:], [False]]))  # last step asking
    warned = sum(bool(asking[max(0, h - lead) : h + 1].any()) for h in hits)
    false = sum(
        not any(a <= h <= b + lead for h in hits) for a, b in zip(starts, ends, strict=True)
    )
    return {
        "takeover_requests": len(starts),
        "warned_interventions": warned,
        "false_requests": false,
    }


def drive(
    predictor: Driver,
    seeds: list[int],
    seconds: float,
    fps: float = FPS,
    offset_limit: float = OFFSET_LIMIT,
    on_frame: Callable[[World, dict, np.ndarray, int], None] | None = None,
    faults: Sequence[FaultSpec] = (),
    takeover: Takeover | None = None,
    traces: list[RoadTrace] | None = None,
) -> DriveReport:
    """Drive `predictor` on each road seed. With `faults`, the predictor's fault gate is
    switched on for the drive, so black, glaring and frozen frames count as missing for
    every model alike (a model without memory holds its last output through them).
    With `traces`, each road's `RoadTrace` is appended to it (to replay takeover rules)."""
    report = DriveReport()
    if faults:  # (only then: a stand-in predictor need not know about faults)
        gate, predictor.fault_gate = predictor.fault_gate, True
    try:
        for seed in seeds:
            report.roads.append(
                drive_road(
                    predictor,
                    seed,
                    seconds,
                    fps,
                    offset_limit=offset_limit,
                    on_frame=on_frame,
                    faults=faults,
                    takeover=takeover,
                    trace=traces,
                )
            )
    finally:
        if faults:
            predictor.fault_gate = gate
    return report
