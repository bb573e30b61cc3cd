"""Regenerate the pictures in README/docs from the real data: python docs/make_figures.py"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from steertime.data import FrameSpec, read_drives
from steertime.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def contact_sheet(out: Path) -> None:
    """Raw frame vs prepared 66x200 frame, one row per dataset."""
    rows = []
    with tempfile.TemporaryDirectory() as t:
        sources = [
            ("udacity_sim_track1", SHARED / "udacity_sim_track1"),
            ("donkey_rc_tub", SHARED / "donkey_rc_tub"),
            ("deeptesla epoch01", SHARED / "deeptesla" / "epoch01_steering.csv"),
            ("simulated (steertime simulate)", simulate(Path(t) / "sim", 0.1)),
        ]
        for label, path in sources:
            d = [d for d in read_drives(path) if d.frames is not None][0]
            raw = next(d.frames.iter_frames())[1]
            prep = FrameSpec().apply(raw)  # what `prepare` stores at its default 66x200
            raw_im = Image.fromarray(raw).resize((320, int(320 * raw.shape[0] / raw.shape[1])))
            row = Image.new("RGB", (760, max(raw_im.height, 66 * 2) + 24), "white")
            row.paste(raw_im, (0, 24))
            row.paste(Image.fromarray(prep).resize((400, 132), Image.NEAREST), (340, 24))
            title = f"{label}: raw {raw.shape[1]}x{raw.shape[0]}  ->  prepared 200x66"
            ImageDraw.Draw(row).text((4, 4), title, fill="black")
            rows.append(row)
    sheet = Image.new("RGB", (760, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    sheet.save(out)


if __name__ == "__main__":
    contact_sheet(ROOT / "docs" / "img" / "prepared_frames.png")
