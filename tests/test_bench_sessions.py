"""benchmarks/bench_sessions.py's pieces that decide what a figure means: the nested tub
folds that choose recipes must never show a fold's training the records it scores, nor
any test record; a variant is its model's recipe plus its overrides."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_sessions")
    finally:
        sys.path.remove(str(BENCH))


def _shown(view: Path, n: int = 5015) -> set[int]:
    meta = json.loads((view / "data" / "manifest.json").read_text().splitlines()[4])
    return set(range(n)) - set(meta["deleted_indexes"])


def test_tubval_folds_score_records_their_training_never_saw(bench, shared_data, tmp_path):
    folds = bench.folds("tubval", tmp_path)
    assert [f["name"] for f in folds] == ["A_3210-4011", "B_0-801", "C_1605-2406"]
    scored_all: set[int] = set()
    for f in folds:
        train, test = _shown(f["train"][0]), _shown(f["test"][0])
        assert len(test) == 802 and not test & scored_all  # three disjoint scored blocks
        scored_all |= test
        assert max(train | test) < bench.TUB_TRAIN_RECORDS  # never a test record
        assert not train & test
        # everything else before the test records trains, but for 40 records (2 s) either
        # side of B's and C's scored block (A's ends where the test records begin)
        lo, hi = min(test), max(test)
        near = 0 if f["name"].startswith("A") else 40
        guard = {i for i in range(lo - near, hi + near + 1) if i not in test}
        assert train == set(range(bench.TUB_TRAIN_RECORDS)) - test - guard
    assert bench.folds("tubval", tmp_path) == folds  # views reused, not rewritten


def test_a_variant_is_its_models_recipe_plus_its_overrides(bench):
    recipes = bench.RECIPES["tub"]
    variants = {"cnn_lstm_l2": ["model.layers=2", "train.seed=3"]}
    out = bench.with_variants(recipes, ["cnn_lstm", "cnn_lstm_l2", "cnn_lstm_l2_s1"], variants)
    assert out["cnn_lstm_l2"] == [
        *recipes["cnn_lstm"],
        *("--set", "model.layers=2", "--set", "train.seed=3"),
    ]
    assert out["cnn_lstm"] == recipes["cnn_lstm"]
    # cli.FLAG=VALUE is a flag of `steertime train` itself; its value may hold an "="
    cli = {"cnn_lstm_mix": ["cli.seeds=4", "cli.alternate=train.recon_weight=1", "data.flip=true"]}
    assert bench.with_variants(recipes, ["cnn_lstm_mix"], cli)["cnn_lstm_mix"] == [
        *recipes["cnn_lstm"],
        *("--set", "data.flip=true", "--seeds", "4", "--alternate", "train.recon_weight=1"),
    ]
    with pytest.raises(SystemExit, match="no such recipe"):
        bench.with_variants(recipes, ["cnn_lstm_l3"], variants)
    with pytest.raises(SystemExit, match="must start with a recipe"):
        bench.with_variants(recipes, ["lstm_x"], {"lstm_x": ["model.layers=2"]})


def test_runs_that_name_their_folds_runs_train_after_them(bench):
    variants = bench.parse_variants(["cnn_lstm_kd=data.teacher={fold}/cnn_lstm,{fold}/cnn_lstm_s1"])
    assert variants["cnn_lstm_kd"] == ["data.teacher={fold}/cnn_lstm,{fold}/cnn_lstm_s1"]
    models = ["cnn_lstm_kd", "cnn_lstm_kd_s1", "cnn_lstm", "cnn_lstm_s1", "pilotnet"]
    recipes = bench.with_variants(bench.RECIPES["tub"], models, variants)
    assert bench.waves(models, recipes) == [
        ["cnn_lstm", "cnn_lstm_s1", "pilotnet"],
        ["cnn_lstm_kd", "cnn_lstm_kd_s1"],
    ]
    # a student of students trains after them; runs that name each other are refused
    variants["cnn_lstm_kdd"] = ["data.teacher={fold}/cnn_lstm_kd,{fold}/cnn_lstm_kd_s1"]
    models = ["cnn_lstm_kdd", *models]
    recipes = bench.with_variants(bench.RECIPES["tub"], models, variants)
    assert bench.waves(models, recipes)[1:] == [["cnn_lstm_kd", "cnn_lstm_kd_s1"], ["cnn_lstm_kdd"]]
    variants["cnn_lstm_kd"] = ["data.teacher={fold}/cnn_lstm_kdd"]
    recipes = bench.with_variants(bench.RECIPES["tub"], models, variants)
    with pytest.raises(SystemExit, match="name each other"):
        bench.waves(models, recipes)


def test_a_seeded_run_names_its_own_seeds_partner(bench):
    """`{seed}`: run `m_ft_s1` starts from `m_s1`, and waits for it, not for seed 0 alone."""
    assert [bench.seed_suffix(m) for m in ("cnn_lstm", "cnn_lstm_s1", "cnn_lstm_s12")] == [
        "",
        "_s1",
        "_s12",
    ]
    variants = bench.parse_variants(["cnn_lstm_ft=train.init_from={fold}/cnn_lstm_kd{seed}"])
    variants["cnn_lstm_kd"] = ["data.teacher={fold}/cnn_lstm"]
    models = ["cnn_lstm", "cnn_lstm_kd", "cnn_lstm_kd_s1", "cnn_lstm_ft", "cnn_lstm_ft_s1"]
    recipes = bench.with_variants(bench.RECIPES["tub"], models, variants)
    assert bench.waves(models, recipes) == [
        ["cnn_lstm"],
        ["cnn_lstm_kd", "cnn_lstm_kd_s1"],
        ["cnn_lstm_ft", "cnn_lstm_ft_s1"],
    ]
    # seed 1's partner missing from --models: it no longer waits on seed 0's
    models = ["cnn_lstm", "cnn_lstm_kd", "cnn_lstm_ft", "cnn_lstm_ft_s1"]
    assert bench.waves(models, recipes) == [
        ["cnn_lstm", "cnn_lstm_ft_s1"],
        ["cnn_lstm_kd"],
        ["cnn_lstm_ft"],
    ]


def test_folds_over_other_frames_get_their_own_features_store(bench, tmp_path):
    """tubval's folds hold different records: one shared store refused every fold after
    the first ("holds features of another … cache")."""
    for name, content in (("a", "1" * 32), ("b", "1" * 32), ("c", "2" * 32)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"content_hash": content}))
    a, b, c = (bench.features_store(tmp_path / "w", tmp_path / n) for n in "abc")
    assert a == b != c and a.parent == tmp_path / "w"


def test_a_prepare_variant_gets_its_own_frame_and_cache(bench):
    frame = bench.FRAME["sessions"]  # --size 80x160 --crop 40,0
    variants = {"cnn_lstm_small": ["prepare.size=40x80", "model.layers=2"]}
    models = ["cnn_lstm", "cnn_lstm_small", "cnn_lstm_small_s1"]
    recipes = bench.with_variants(bench.RECIPES["sessions"], models, variants)
    assert recipes["cnn_lstm_small"] == [*recipes["cnn_lstm"], "--set", "model.layers=2"]
    frames = bench.frames_of(frame, models, variants)
    assert frames["cnn_lstm"] == frame
    small = ["--size", "40x80", "--crop", "40,0"]
    assert frames["cnn_lstm_small"] == frames["cnn_lstm_small_s1"] == small
    assert bench.cache_suffix(frame, frame) == ""
    assert bench.cache_suffix(small, frame) == "_size40x80"
    wide = bench.frames_of(frame, ["pilotnet_c"], {"pilotnet_c": ["prepare.crop=0,0"]})
    assert bench.cache_suffix(wide["pilotnet_c"], frame) == "_crop0-0"


def test_what_a_prepare_variant_cannot_do_is_refused_before_training(bench):
    frame, recipes = bench.FRAME["tub"], bench.RECIPES["tub"]
    variants = {
        "cnn_lstm_r72": ["prepare.size=72x96"],
        "feat_lstm_r72": ["prepare.size=72x96"],
        "cnn_lstm_bag": ["prepare.seed=1"],  # other validation blocks: the same frames
    }
    models = ["cnn_lstm", "cnn_lstm_s1", "cnn_lstm_r72", "cnn_lstm_r72_s1", "cnn_lstm_bag"]
    frames = bench.frames_of(frame, models, variants)
    same = {"m": [("cnn_lstm", 1.0), ("cnn_lstm_s1", 1.0), ("cnn_lstm_bag", 1.0)]}
    bench.check_frames(frames, frame, bench.with_variants(recipes, models, variants), same)
    mixed = {"m": [("cnn_lstm", 1.0), ("cnn_lstm_r72", 1.0)]}
    with pytest.raises(SystemExit, match="--mix m: its members are prepared differently"):
        bench.check_frames(frames, frame, bench.with_variants(recipes, models, variants), mixed)
    feats = ["feat_lstm_r72"]
    with pytest.raises(SystemExit, match="--variant feat_lstm_r72: a features model"):
        bench.check_frames(
            bench.frames_of(frame, feats, variants),
            frame,
            bench.with_variants(recipes, feats, variants),
            {},
        )


def test_variants_parse_and_a_malformed_one_is_refused_naming_it(bench):
    got = bench.parse_variants(["cnn_lstm_x=model.layers=2;data.brightness=0.2"])
    assert got == {"cnn_lstm_x": ["model.layers=2", "data.brightness=0.2"]}
    for bad in ("cnn_lstm_x", "cnn_lstm_x=model.layers", "=model.layers=2", "a=b=1;c"):
        with pytest.raises(SystemExit, match=f"got '{bad}'"):
            bench.parse_variants([bad])


def test_scores_of_earlier_runs_are_kept_beside_later_ones(bench):
    import numpy as np
    import pandas as pd

    frames = {"drive": ["d"] * 3, "t": [0.0, 0.05, 0.1], "true_steering": [0.1, -0.2, 0.3]}
    first = pd.DataFrame({**frames, "a:steering": [1.0, 2, 3], "b:steering": [4.0, 5, 6]})
    later = pd.DataFrame({**frames, "b:steering": [7.0, 8, 9], "c:steering": [0.0, 0, 0]})
    kept = bench.merge_predictions(bench.merge_predictions(None, first), later)
    assert sorted(c for c in kept if ":" in c) == ["a:steering", "b:steering", "c:steering"]
    assert kept["a:steering"].tolist() == [1, 2, 3]  # not named again: kept
    assert kept["b:steering"].tolist() == [7, 8, 9]  # scored again: replaced
    moved = later.assign(true_steering=np.array([0.1, -0.2, 0.4]))
    with pytest.raises(SystemExit, match="frames changed"):
        bench.merge_predictions(kept, moved)


def test_track_says_when_each_run_first_reached_the_peer(bench):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    parts = []
    for fold in ("f1", "f2"):
        t = np.arange(200) / 20
        truth = np.sin(t)
        parts.append(
            pd.DataFrame(
                {
                    "drive": fold,
                    "t": t,
                    "fold": fold,
                    "true_steering": truth,
                    "donkey_linear:steering": truth + rng.normal(0, 0.4, 200),
                    "cnn_lstm:steering": truth + rng.normal(0, 0.2, 200),
                    "cnn_lstm_s1:steering": truth + rng.normal(0, 0.2, 200),
                }
            )
        )
    preds = pd.concat(parts, ignore_index=True)
    # elapsed_s, held-out RMSE per epoch: seed 0 reaches 0.3 (and the peer's ~0.4) at 20 s
    # on f1 and 15 s on f2; seed 1 never does on f2
    curve = lambda *r: np.array(r, dtype=float)  # noqa: E731
    curves = {
        "f1": {
            "cnn_lstm": curve([10, 0.6], [20, 0.29], [30, 0.35]),
            "cnn_lstm_s1": curve([10, 0.2], [20, 0.2]),
        },
        "f2": {
            "cnn_lstm": curve([5, 0.6], [15, 0.1]),
            "cnn_lstm_s1": curve([5, 0.6], [15, 0.7]),
        },
    }
    targets = {"f1": 0.3, "f2": 0.3}
    assert bench.first_reached(curves, targets, ["cnn_lstm"]) == 35.0
    assert bench.first_reached(curves, targets, ["cnn_lstm_s1"]) == "never"
    assert bench.first_reached(curves, targets, ["untracked"]) is None

    res = bench.table(preds, ["cnn_lstm", "cnn_lstm_s1"], ["donkey_linear"], {}, curves)
    vs = res["vs_donkey_linear"]
    peer = vs["donkey_linear"]["per_fold"]
    assert set(peer) == {"f1", "f2"} and "seconds_to_peer" not in vs["donkey_linear"]
    want = sum(curves[f]["cnn_lstm"][curves[f]["cnn_lstm"][:, 1] <= peer[f]][0, 0] for f in peer)
    assert vs["cnn_lstm"]["seconds_to_peer"] == want
    assert vs["cnn_lstm_s1"]["seconds_to_peer"] == "never"
    # pooled over the folds, epoch by epoch (the protocol's figure): seed 0 after epoch 2
    # of both folds (20 + 15 s); seed 1 never (0.447, then 0.515, against the peer's ~0.4)
    assert 0.38 < vs["donkey_linear"]["steering"] < 0.44
    assert vs["cnn_lstm"]["seconds_to_peer_pooled"] == 35.0
    assert vs["cnn_lstm_s1"]["seconds_to_peer_pooled"] == "never"
    text = bench.markdown("tub", res, ["cnn_lstm", "cnn_lstm_s1"])
    assert "first as good as `donkey_linear` on these frames after 35 s (pooled" in text
    assert f"on these frames after {want:.0f} s (fold by fold)" in text
    assert "never as good as `donkey_linear`" in text


def test_sessval_trains_on_one_session_and_scores_the_other_two(bench, tmp_path):
    folds = bench.folds("sessval", tmp_path)
    assert [f["name"] for f in folds] == [f"on_{s}" for s in bench.SESSIONS]
    for f, s in zip(folds, bench.SESSIONS, strict=True):
        split = f["train"][1]
        held = {split[i + 1] for i, a in enumerate(split) if a == "--test-session"}
        assert held == set(bench.SESSIONS) - {s} and f["test"] is None


def test_pairs_choose_for_a_test_session_without_its_frames(bench):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    parts = []
    for a in ("x", "y", "z"):  # trained on a, scored on the other two
        for b in sorted({"x", "y", "z"} - {a}):
            truth = rng.normal(0, 0.5, 100)
            # the variant is twice as wrong wherever session z is involved, else half
            k = 2.0 if "z" in (a, b) else 0.5
            noise = rng.normal(0, 0.1, 100)
            parts.append(
                pd.DataFrame(
                    {
                        "fold": f"on_{a}",
                        # as evaluate names them: with and without a gap's `#j`
                        "drive": f"tub:{b}#0[0:100]" if b == "x" else f"tub:{b}[0:100]",
                        "true_steering": truth,
                        "plain:steering": truth + noise,
                        "var:steering": truth + k * noise,
                    }
                )
            )
    preds = pd.concat(parts, ignore_index=True)
    res = bench.pairs(preds, ["plain", "var"], "plain")
    assert set(res["var"]["pair"]) == {"x->y", "x->z", "y->x", "y->z", "z->x", "z->y"}
    # for a test on z only x->y and y->x may choose: there the variant halves the error
    assert res["var"]["choose_for"]["z"] == pytest.approx(0.5)
    assert res["var"]["choose_for"]["x"] == pytest.approx(2.0)
    assert res["plain"]["choose_for"] == {"x": 1.0, "y": 1.0, "z": 1.0}
    plain_xy = np.sqrt(np.mean(parts[0]["plain:steering"].sub(parts[0]["true_steering"]) ** 2))
    assert res["plain"]["pair"]["x->y"] == pytest.approx(plain_xy)
    assert bench.session_of("donkey_rc_sessions:23-01-12_0#0[0:4998]") == "23-01-12_0"
