"""Atomic outputs get the modes the user's umask gives, not tempfile's private 0600/0700."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from steertime.atomic import atomic_dir, write_text
from steertime.video import h264_writer


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize(("mask", "fmode", "dmode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, umask, mask, fmode, dmode):
    umask(mask)
    write_text(tmp_path / "report.html", "<html></html>")
    assert _mode(tmp_path / "report.html") == fmode
    with atomic_dir(tmp_path / "cache") as d:
        (d / "x").write_text("1")
    assert _mode(tmp_path / "cache") == dmode
    with h264_writer(tmp_path / "overlay.mp4", 10) as w:
        for _ in range(3):
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert _mode(tmp_path / "overlay.mp4") == fmode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "overlay.mp4", "report.html"]
