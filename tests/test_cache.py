"""The prepared cache: exact frames, signals, splits with guards, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steertime.data import Cache, FrameSpec, PrepareConfig, SplitConfig, read_drives
from steertime.data.cache import prepare_drives
from steertime.data.drive import assemble_drives
from steertime.data.frames import ArrayFrames
from steertime.data.splits import make_splits
from steertime.data.units import Unit
from tests.test_formats_written import write_generic_images


def _drive(n=300, h=40, w=80, name="d"):
    def make(i):
        return np.full((h, w, 3), i % 256, np.uint8)

    return assemble_drives(
        name=name,
        source="gen",
        format="gen",
        timestamps=np.arange(n) * 0.05,
        signals={"steering": np.sin(np.arange(n) / 10.0)},
        units={"steering": Unit("rad", 1.0)},
        frames=ArrayFrames(n, make),
    )


def test_frames_match_decode_and_preprocess(tmp_path):
    write_generic_images(tmp_path / "log", 20)
    (d,) = read_drives(tmp_path / "log")
    spec = FrameSpec(24, 32, crop_top=6, crop_bottom=2)
    cache = prepare_drives([d], tmp_path / "c", PrepareConfig(frame=spec))
    cd = cache.drives[0]
    got = cd.read_frames(5, 9)
    want = np.stack([spec.apply(d.frames.load(i)) for i in range(5, 9)])
    assert got.shape == (4, 24, 32, 3) and np.array_equal(got, want)
    assert np.array_equal(cd.frames_mmap()[5:9], want)
    assert np.allclose(cd.signals["steering"], d.signals["steering"])
    assert np.allclose(cd.timestamps, d.timestamps)
    m = cache.manifest
    assert m["frame"]["crop_top"] == 6 and m["drives"][0]["units"]["steering"]["name"] == "deg"


def test_content_hash_is_deterministic_and_sensitive(tmp_path):
    a = prepare_drives(_drive(), tmp_path / "a")
    b = prepare_drives(_drive(), tmp_path / "b")
    c = prepare_drives(_drive(n=299), tmp_path / "c")
    assert a.content_hash == b.content_hash != c.content_hash


def test_overwrite_is_atomic_and_explicit(tmp_path):
    prepare_drives(_drive(100), tmp_path / "c")
    with pytest.raises(FileExistsError):
        prepare_drives(_drive(120), tmp_path / "c")
    assert Cache.open(tmp_path / "c").n_frames == 100
    prepare_drives(_drive(120), tmp_path / "c", overwrite=True)
    assert Cache.open(tmp_path / "c").n_frames == 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_fps_downsampling(tmp_path):
    cache = prepare_drives(_drive(200), tmp_path / "c", PrepareConfig(fps=10))
    assert cache.n_frames == 100
    assert np.allclose(np.diff(cache.drives[0].timestamps), 0.1)


def test_truncated_cache_is_detected(tmp_path):
    prepare_drives(_drive(50), tmp_path / "c")
    f = tmp_path / "c" / "drives" / "000" / "frames.npy"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(Exception, match="frames.npy has"):
        Cache.open(tmp_path / "c")


def test_resplit_rewrites_manifest(tmp_path):
    cache = prepare_drives(_drive(1000), tmp_path / "c")
    cache.resplit(SplitConfig("blocks", seed=3, guard=20))
    again = Cache.open(tmp_path / "c")
    assert again.manifest["splits"]["config"]["mode"] == "blocks"
    assert again.segments() == make_splits([1000], SplitConfig("blocks", seed=3, guard=20))


def test_tail_split_holds_out_the_final_block():
    segs = make_splits([1000], SplitConfig("tail", val=0.15, test=0.15, guard=50))
    assert [(s.split, s.start, s.stop) for s in segs] == [
        ("train", 0, 700),
        ("val", 750, 850),
        ("test", 900, 1000),
    ]


def test_drive_split_needs_three_drives():
    with pytest.raises(Exception, match="at least 3 drives"):
        make_splits([100, 100], SplitConfig("drive"))
    segs = make_splits([100] * 10, SplitConfig("drive", seed=1))
    assert {s.split for s in segs} == {"train", "val", "test"}
    assert all(s.start == 0 and s.stop == 100 for s in segs)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 3000), min_size=1, max_size=5),
    mode=st.sampled_from(["tail", "blocks"]),
    guard=st.integers(0, 120),
    n_blocks=st.integers(1, 20),
    seed=st.integers(0, 10),
)
def test_splits_never_straddle(lengths, mode, guard, n_blocks, seed):
    cfg = SplitConfig(mode, 0.15, 0.15, guard, n_blocks, seed)
    segs = make_splits(lengths, cfg)
    assert segs == make_splits(lengths, cfg)  # deterministic
    for d, n in enumerate(lengths):
        mine = sorted((s for s in segs if s.drive == d), key=lambda s: s.start)
        for s in mine:
            assert 0 <= s.start < s.stop <= n
        for a, b in zip(mine, mine[1:], strict=False):
            assert a.stop <= b.start  # disjoint
            if a.split != b.split:
                assert b.start - a.stop >= guard  # no window of `guard` frames sees both


NAMES = ["tub:s0#0", "tub:s0#1", "tub:s1", "tub:s2"]


def test_session_split_holds_out_whole_sessions():
    segs = make_splits([500, 300, 400, 600], SplitConfig("session", test_sessions=["s2"]), NAMES)
    by_drive = {s.drive: [] for s in segs}
    for s in segs:
        by_drive[s.drive].append((s.split, s.start, s.stop))
    assert by_drive[3] == [("test", 0, 600)]  # the held-out session, whole
    # the other sessions train, with the final 15% of each drive as val behind a guard
    assert by_drive[0] == [("train", 0, 425), ("val", 475, 500)]
    assert by_drive[2] == [("train", 0, 340), ("val", 390, 400)]


def test_session_split_with_a_val_session():
    cfg = SplitConfig("session", test_sessions=["s2"], val_sessions=["s1"])
    segs = make_splits([500, 300, 400, 600], cfg, NAMES)
    assert [(s.drive, s.split, s.start, s.stop) for s in segs] == [
        (0, "train", 0, 500),
        (1, "train", 0, 300),
        (2, "val", 0, 400),
        (3, "test", 0, 600),
    ]


@pytest.mark.parametrize(
    "kw,names,match",
    [
        ({"test_sessions": ["s9"]}, NAMES, "session 's9' is not in this recording; sessions: s0"),
        ({}, NAMES, "needs --test-session"),
        ({"test_sessions": ["s0"], "val_sessions": ["s0"]}, NAMES, "both test and val"),
        ({"test_sessions": ["s0", "s1", "s2"]}, NAMES, "no session for training"),
        ({"test_sessions": ["s0"]}, None, "needs the drives' names"),
    ],
)
def test_session_split_errors_name_the_problem(kw, names, match):
    with pytest.raises(Exception, match=match):
        make_splits([500, 300, 400, 600], SplitConfig("session", **kw), names)


def test_session_names_need_session_mode():
    with pytest.raises(Exception, match="need split mode 'session'"):
        SplitConfig("tail", test_sessions=["s0"])


def test_session_split_on_the_real_sessions(shared_data, tmp_path):
    drives = read_drives(shared_data / "donkey_rc_sessions")
    assert sum(len(d) for d in drives) == 13338
    few = [d.slice(np.arange(0, len(d), 50), d.name) for d in drives]  # keep the test fast
    cfg = PrepareConfig(
        frame=FrameSpec(24, 32), split=SplitConfig("session", test_sessions=["23-01-12_1"])
    )
    cache = prepare_drives(few, tmp_path / "c", cfg)
    test = cache.segments("test")
    assert [cache.drives[s.drive].name for s in test] == ["donkey_rc_sessions:23-01-12_1"]
    assert sum(len(s) for s in test) == len(few[2])
    again = Cache.open(tmp_path / "c")
    assert again.manifest["splits"]["config"]["test_sessions"] == ["23-01-12_1"]
    summary = again.split_summary()
    assert summary["test"]["sessions"] == ["23-01-12_1"]
    assert summary["train"]["sessions"] == ["23-01-12_0", "23-01-12_2"]
    assert summary["test"]["frames"] == len(few[2])  # guards drop frames between the others
    rate = again.manifest["drives"][test[0].drive]["rate_hz"]
    assert summary["test"]["seconds"] == pytest.approx(len(few[2]) / rate)


def test_prepare_warns_when_it_squashes_and_native_keeps_the_size(tmp_path, shared_data):
    """A tub's 120x160 (4:3) into 66x200 is stretched: say so; --size native keeps it."""
    from typer.testing import CliRunner

    from steertime.cli import app
    from steertime.data.preprocess import FrameSpec, squash_warning

    assert squash_warning((160, 320), FrameSpec(80, 320, 60, 20)) == ""
    assert "stretched 2.27x wider" in squash_warning((120, 160), FrameSpec(66, 200))
    tub = str(shared_data / "donkey_rc_tub")
    r = CliRunner().invoke(app, ["prepare", tub, "--out", str(tmp_path / "sq"), "--fps", "2"])
    assert r.exit_code == 0, r.output
    assert "stretched" in r.output and "--size native" in r.output
    r = CliRunner().invoke(
        app, ["prepare", tub, "--out", str(tmp_path / "nat"), "--size", "native", "--fps", "2"]
    )
    assert r.exit_code == 0, r.output
    assert "stretched" not in r.output and "of 120x160" in r.output
