"""Each kind of bad input gets a clear error or warning naming the file and row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from steertime.data import PrepareConfig, ReadOptions, read_drives
from steertime.data.cache import prepare_drives
from steertime.data.drive import assemble_drives
from steertime.data.units import Unit
from steertime.errors import DataError
from tests.conftest import interrupt_on_call, tree_digest, write_video
from tests.test_formats_written import write_generic_images, write_tub


def _corrupt(path, how):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3] if how == "truncate" else b"not an image at all")


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_image_is_dropped_with_warning_or_refused(tmp_path, how):
    write_generic_images(tmp_path / "log", 20)
    _corrupt(tmp_path / "log" / "img" / "0007.png", how)
    before = tree_digest(tmp_path / "log")
    drives = read_drives(tmp_path / "log")
    cache = prepare_drives(drives, tmp_path / "c", PrepareConfig(), source=str(tmp_path / "log"))
    assert cache.n_frames == 19
    msg = " ".join(cache.manifest["drives"][0]["problems"])
    assert "0007.png" in msg and "row 9" in msg  # CSV row 9 = frame 7 after the header
    with pytest.raises(DataError, match=r"0007\.png.*row 9"):
        prepare_drives(drives, tmp_path / "c2", PrepareConfig(skip_bad_frames=False))
    assert not (tmp_path / "c2").exists()
    assert not list(tmp_path.glob(".c2*"))  # no half-written cache left behind
    assert tree_digest(tmp_path / "log") == before


def test_truncated_video_reports_missing_frames(tmp_path):
    write_video(tmp_path / "v.mkv", 40, size=(160, 120))
    raw = (tmp_path / "v.mkv").read_bytes()
    (tmp_path / "v.mkv").write_bytes(raw[: len(raw) // 2])
    pd.DataFrame({"angle": np.zeros(40)}).to_csv(tmp_path / "s.csv", index=False)
    m = {
        "csv": "s.csv",
        "frames": "v.mkv",
        "fps": 30,
        "signals": {"steering": {"column": "angle", "unit": "rad"}},
    }
    (d,) = read_drives(tmp_path, "generic", ReadOptions(mapping=m))
    assert 0 < len(d) < 40
    assert any(f"{40 - len(d)} rows are past the end of v.mkv" in p for p in d.problems)


def test_truncated_mp4_is_a_clear_error(tmp_path):
    write_video(tmp_path / "v.mp4", 40)
    raw = (tmp_path / "v.mp4").read_bytes()
    (tmp_path / "v.mp4").write_bytes(raw[: len(raw) // 2])
    pd.DataFrame({"angle": np.zeros(40)}).to_csv(tmp_path / "s.csv", index=False)
    m = {"csv": "s.csv", "frames": "v.mp4", "fps": 30, "signals": {"steering": {"column": "angle"}}}
    with pytest.raises(DataError, match=r"v\.mp4: video cannot be read"):
        read_drives(tmp_path, "generic", ReadOptions(mapping=m))


def test_unreadable_video(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 1000)
    pd.DataFrame({"angle": np.zeros(4)}).to_csv(tmp_path / "s.csv", index=False)
    m = {"csv": "s.csv", "frames": "v.mp4", "fps": 30, "signals": {"steering": {"column": "angle"}}}
    with pytest.raises(DataError, match=r"v\.mp4.*cannot be read"):
        read_drives(tmp_path, "generic", ReadOptions(mapping=m))


def test_fewer_labels_than_video_frames(tmp_path):
    write_video(tmp_path / "v.mp4", 20)
    pd.DataFrame({"angle": np.zeros(12)}).to_csv(tmp_path / "s.csv", index=False)
    m = {"csv": "s.csv", "frames": "v.mp4", "fps": 30, "signals": {"steering": {"column": "angle"}}}
    (d,) = read_drives(tmp_path, "generic", ReadOptions(mapping=m))
    assert len(d) == 12 and any("8 video frames have no CSV row" in p for p in d.problems)


def test_rows_naming_missing_files(tmp_path):
    write_generic_images(tmp_path, 20)
    (tmp_path / "img" / "0003.png").unlink()
    (d,) = read_drives(tmp_path)
    assert len(d) == 19 and any("rows 5" in p for p in d.problems)
    with pytest.raises(DataError, match=r"log\.csv.*missing images \(rows 5\)"):
        read_drives(tmp_path, options=ReadOptions(strict=True))


def test_udacity_sim_missing_center_images(tmp_path, shared_data):
    (tmp_path / "IMG").mkdir()
    src = shared_data / "udacity_sim_track1"
    lines = (src / "driving_log.csv").read_text().splitlines()[:5]
    for ln in lines[:4]:
        name = ln.split(",")[0]
        (tmp_path / "IMG" / name).write_bytes((src / "IMG" / name).read_bytes())
    (tmp_path / "driving_log.csv").write_text("\n".join(lines) + "\n")
    (d,) = read_drives(tmp_path)
    assert len(d) == 4 and any("missing images (rows 5)" in p for p in d.problems)
    with pytest.raises(DataError, match=r"driving_log\.csv.*missing images \(rows 5\)"):
        read_drives(tmp_path, options=ReadOptions(strict=True))


def test_nan_inf_signals_dropped_and_named():
    t = np.arange(10) * 0.1
    s = np.zeros(10)
    s[3], s[6] = np.nan, np.inf
    (d,) = assemble_drives(
        name="x",
        source="log.csv",
        format="t",
        timestamps=t,
        signals={"steering": s},
        units={"steering": Unit("deg")},
        frames=None,
        rows=np.arange(10) + 2,
    )
    assert len(d) == 8 and "rows 5, 8" in d.problems[0]
    with pytest.raises(DataError, match=r"log\.csv: row 5: non-finite 'steering'"):
        assemble_drives(
            name="x",
            source="log.csv",
            format="t",
            timestamps=t,
            signals={"steering": s},
            units={"steering": Unit("deg")},
            frames=None,
            rows=np.arange(10) + 2,
            strict=True,
        )


def test_unsorted_and_duplicate_timestamps():
    t = np.array([0.0, 0.1, 0.3, 0.2, 0.4, 0.4, 0.5])
    s = np.arange(7.0)
    (d,) = assemble_drives(
        name="x",
        source="log.csv",
        format="t",
        timestamps=t,
        signals={"steering": s},
        units={"steering": Unit("deg")},
        frames=None,
    )
    assert np.all(np.diff(d.timestamps) > 0)
    assert list(d.signals["steering"]) == [0, 1, 3, 2, 4, 6]
    assert any("out of order" in p for p in d.problems)
    assert any("duplicate" in p and "rows 5" in p for p in d.problems)


def test_empty_folder_and_unknown_format(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        read_drives(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown format.*--format"):
        read_drives(tmp_path / "odd")
    with pytest.raises(DataError, match="unknown format 'nope'"):
        read_drives(tmp_path / "odd", "nope")


def test_donkey_path_escape_refused(tmp_path):
    names = [f"{i:04d}.png" for i in range(10)]
    names[4] = "../../../../etc/passwd"
    write_tub(tmp_path, 10, image_names=names)
    with pytest.raises(DataError, match=r"catalog_0\.catalog: row 5.*escapes"):
        read_drives(tmp_path)


def test_donkey_bad_json_line(tmp_path):
    write_tub(tmp_path, 10)
    cat = tmp_path / "data" / "catalog_0.catalog"
    lines = cat.read_text().splitlines()
    lines[6] = lines[6][:20]
    cat.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"catalog_0\.catalog: row 7: invalid JSON"):
        read_drives(tmp_path)


def test_csv_non_numeric_value_named(tmp_path):
    df = write_generic_images(tmp_path, 10)
    df["deg"] = df["deg"].astype(object)
    df.loc[4, "deg"] = "left"
    df.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataError, match=r"log\.csv: row 6: field 'steering': not a number: 'left'"):
        read_drives(tmp_path)


def test_mapping_unknown_key_and_column(tmp_path):
    write_generic_images(tmp_path, 5, extra={"colour": "red"})
    with pytest.raises(DataError, match="unknown mapping keys.*colour"):
        read_drives(tmp_path)
    write_generic_images(tmp_path, 5)
    m = json.loads(
        json.dumps(
            {
                "csv": "log.csv",
                "frames": "img",
                "fps": 10,
                "frame": {"column": "file"},
                "signals": {"steering": {"column": "wheel"}},
            }
        )
    )
    with pytest.raises(DataError, match="column 'wheel' not in CSV"):
        read_drives(tmp_path, "generic", ReadOptions(mapping=m))


def test_failed_prepare_leaves_nothing(tmp_path):
    write_generic_images(tmp_path / "log", 20)
    drives = read_drives(tmp_path / "log")
    with pytest.raises(KeyboardInterrupt):
        prepare_drives(drives, tmp_path / "cache", progress=interrupt_on_call(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_donkey_missing_images_skipped_or_strict(tmp_path):
    write_tub(tmp_path, 10)
    (tmp_path / "data" / "images" / "0004.png").unlink()
    (d,) = read_drives(tmp_path)
    assert len(d) == 9
    assert any(
        "1 records name missing images (records catalog_0.catalog:5)" in p for p in d.problems
    )
    with pytest.raises(DataError, match=r"missing images \(records catalog_0\.catalog:5\)"):
        read_drives(tmp_path, options=ReadOptions(strict=True))


def test_keep_present_lists_at_most_eight_and_refuses_when_none_left(tmp_path):
    from steertime.data.frames import keep_present

    problems: list[str] = []
    present = [i % 2 == 0 for i in range(30)]
    mask = keep_present(present, [str(i) for i in range(30)], tmp_path / "log.csv", False, problems)
    assert mask.sum() == 15
    assert (
        "15 rows name missing images (rows 1, 3, 5, 7, 9, 11, 13, 15 … (15 in all))" in problems[0]
    )
    with pytest.raises(DataError, match=r"log\.csv.*2 rows name missing images"):
        keep_present([False, False], ["2", "3"], tmp_path / "log.csv", False, [])
