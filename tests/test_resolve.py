"""The one resolver (issue 27): every path form of every format, caches known by their
marker, bare videos, and what is said when a path is the wrong kind or matches nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from steertime.data import (
    Cache,
    ReadOptions,
    detect_format,
    inspect,
    prepare,
    read_drives,
    read_recording,
    resolve,
)
from steertime.data.readers.generic import mapping_from_pairs
from steertime.errors import DataError, SteertimeError
from steertime.stream.run import load_source
from tests.conftest import tree_digest, write_video
from tests.test_formats_written import write_generic_images, write_tub, write_udacity_real
from tests.test_path_forms import CASES, SEGMENT


def _names(path, **kw) -> list[tuple[str, int]]:
    return [(d.name, len(d)) for d in read_drives(path, **kw)]


@pytest.mark.parametrize("fmt,form", CASES)
def test_every_real_form_resolves_to_its_format(shared_data, fmt, form):
    src = resolve(f"{shared_data}/{form}")
    assert (src.kind, src.format) == ("recording", fmt)
    assert detect_format(f"{shared_data}/{form}") == fmt


def test_generic_images_folder_mapping_csv_and_frames(tmp_path):
    write_generic_images(tmp_path)
    want = _names(tmp_path)
    for form in ("steertime.yaml", "log.csv", "img"):
        assert resolve(tmp_path / form).format == "generic"
        assert _names(tmp_path / form) == want


def test_generic_video_forms_and_a_bare_video_beside(tmp_path):
    write_video(tmp_path / "front.mp4", 15)
    pd.DataFrame({"frame": np.arange(15), "deg": np.arange(15.0)}).to_csv(
        tmp_path / "log.csv", index=False
    )
    m = mapping_from_pairs(["csv=log.csv", "frames=front.mp4", "fps=10", "steering=deg:deg"])
    (tmp_path / "steertime.yaml").write_text(yaml.safe_dump(m))
    for form in ("", "steertime.yaml", "log.csv", "front.mp4"):
        assert resolve(tmp_path / form).format == "generic"
        assert _names(tmp_path / form) == [("log", 15)]
    # A video the mapping does not name is a bare video: predict and render take it.
    (tmp_path / "other.mp4").symlink_to(tmp_path / "front.mp4")
    assert resolve(tmp_path / "other.mp4").kind == "video"
    (d,) = load_source(tmp_path / "other.mp4")
    assert (d.name, len(d), d.signals) == ("other", 15, {})
    assert inspect(tmp_path / "other.mp4").format == "video"
    for refuse in (read_recording, lambda p: prepare(p, tmp_path / "c")):
        with pytest.raises(DataError, match="other.mp4: a video without labels"):
            refuse(tmp_path / "other.mp4")
    # A CSV and a --map, no steertime.yaml: --map means the generic reader.
    (tmp_path / "steertime.yaml").unlink()
    opts = ReadOptions(mapping=m)
    assert resolve(tmp_path / "log.csv", options=opts).format == "generic"
    assert _names(tmp_path / "log.csv", options=opts) == [("log", 15)]


def test_udacity_real_folder_or_its_csv(tmp_path):
    write_udacity_real(tmp_path)
    assert _names(tmp_path) == _names(tmp_path / "interpolated.csv") == [(tmp_path.name, 12)]


def test_a_tub_of_any_name_its_manifest_and_mycar(tmp_path):
    write_tub(tmp_path / "mycar", 12)
    mycar = tmp_path / "mycar"
    want = _names(mycar)
    for form in (mycar / "data", mycar / "data" / "manifest.json"):
        assert resolve(form).format == "donkey" and _names(form) == want
    tubs = tmp_path / "tubs"
    tubs.mkdir()
    (mycar / "data").rename(tubs / "tub_7")
    assert _names(tubs / "tub_7") == _names(tubs / "tub_7" / "manifest.json") == [("tub_7:s0", 12)]


def test_a_cache_is_known_by_its_marker_not_its_file_name(tmp_path, shared_data):
    car = tmp_path / "car"
    car.mkdir()
    tub = shared_data / "donkey_rc_tub" / "data"
    before = tree_digest(tub)
    # A cache that happens to sit where a tub would (car/data): still a cache.
    prepare(f"{shared_data}/deeptesla/epoch01_front.mkv", car / "data", _tiny())
    for form in (car / "data", car / "data" / "manifest.json"):
        assert resolve(form).kind == "cache" and Cache.open(form).n_frames == 755
    with pytest.raises(DataError, match="donkey: data/manifest.json is not a tub manifest"):
        resolve(car)
    for refuse in (read_recording, inspect, load_source):
        with pytest.raises(DataError, match=r"data: this is a prepared steertime cache"):
            refuse(car / "data")
    # ... and a tub is never taken for a cache: the issue's `--data ~/mycar/data`.
    with pytest.raises(DataError, match="this is a donkey recording, not a prepared cache"):
        Cache.open(tub)
    assert tree_digest(tub) == before


def _tiny():
    from steertime.data import FrameSpec, PrepareConfig, SplitConfig

    return PrepareConfig(frame=FrameSpec(24, 32), split=SplitConfig(guard=2))


def test_nothing_matches_names_every_format_and_why(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as e:
        resolve(tmp_path / "notes.txt")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'notes.txt'}: unknown format") and "\n" not in msg
    for fmt, why in [
        ("cache", "no manifest.json"),
        ("udacity_sim", "no driving_log.csv"),
        ("donkey", "not a tub folder"),
        ("deeptesla", "not an epochNN_front.mkv"),
        ("comma2k19", "no segment"),
        ("generic", "no steertime.yaml"),
        ("video", "not a video file"),
    ]:
        assert f"{fmt}: {why}" in msg
    with pytest.raises(DataError, match="unknown format 'nope'"):
        resolve(tmp_path, "nope")


def test_deeptesla_video_alone_or_forced_is_a_bare_video(tmp_path, shared_data):
    mkv = shared_data / "deeptesla" / "epoch01_front.mkv"
    (d,) = load_source(mkv, "video")
    assert (d.name, len(d), d.signals) == ("epoch01_front", 755, {})
    (tmp_path / "epoch05_front.mkv").symlink_to(mkv)  # no epoch05_steering.csv beside it
    assert resolve(tmp_path / "epoch05_front.mkv").kind == "video"


def test_comma2k19_chunk_reads_every_route(tmp_path, shared_data):
    for route, seg in (("r1", "40"), ("r2", "41")):
        (tmp_path / route).mkdir()
        (tmp_path / route / seg).symlink_to(shared_data / "comma2k19" / SEGMENT)
    assert _names(tmp_path) == [("r1/40", 1200), ("r2/41", 1200)]


def test_prepare_refuses_the_recordings_folder_from_a_file_form(tmp_path):
    write_generic_images(tmp_path / "rec")
    before = tree_digest(tmp_path / "rec")
    with pytest.raises(SteertimeError, match="inside the source folder"):
        prepare(tmp_path / "rec" / "log.csv", tmp_path / "rec" / "cache", _tiny())
    assert tree_digest(tmp_path / "rec") == before
