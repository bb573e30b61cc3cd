"""train.heap=keep: glibc serves large blocks from the heap and keeps them after a free."""

import subprocess
import sys
import textwrap

import pytest

from steertime import heap
from steertime.errors import SteertimeError
from steertime.train import train
from tests.conftest import small_train_config

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Bytes malloc holds in mmap'd blocks while a 64 MiB tensor is alive, and how much the
# heap grew for it and kept after the free. A fresh interpreter each time, so the setting
# is not left on in this test process.
PROBE = textwrap.dedent(
    """
    import ctypes, sys, torch
    from steertime.heap import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    kept = keep_freed_memory() if sys.argv[1] == "keep" else False
    before = libc.mallinfo2().arena
    x = torch.ones(64 << 18)  # 64 MiB of float32
    mapped = libc.mallinfo2().hblkhd
    del x
    print(kept, mapped, libc.mallinfo2().arena - before)
    """
)


def _probe(mode: str) -> tuple[bool, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@glibc
def test_keep_serves_a_large_activation_from_the_heap_and_keeps_it():
    kept, mapped, arena = _probe("keep")
    assert kept
    assert mapped < 64 << 20  # not its own mmap...
    assert arena >= 64 << 20  # ...but heap that stays after the free, for the next step


@glibc
def test_without_it_malloc_maps_the_block_and_hands_it_back():
    kept, mapped, arena = _probe("system")
    assert not kept
    assert mapped >= 64 << 20
    assert arena < 64 << 20


def test_a_libc_without_mallopt_is_left_as_it_was(monkeypatch):
    def no_libc(*_a, **_k):
        raise OSError("no such library")

    monkeypatch.setattr(heap, "_kept", False)
    monkeypatch.setattr(heap.ctypes, "CDLL", no_libc)
    assert heap.keep_freed_memory() is False


def test_a_run_records_its_heap_and_refuses_an_unknown_one(tiny_cache, tmp_path):
    cfg = small_train_config(tiny_cache, tmp_path / "sys", "train.heap=system")
    run = train(cfg, progress=False)
    assert "heap: system" in (run / "config.yaml").read_text()
    cfg = small_train_config(tiny_cache, tmp_path / "bad", "train.heap=jemalloc")
    with pytest.raises(SteertimeError, match=r"train.heap must be keep or system, got 'jemalloc'"):
        train(cfg, progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("keep", [True, False])
def test_feature_extraction_keeps_the_heap_unless_told_not_to(
    keep, tiny_cache, tmp_path, monkeypatch
):
    from steertime.data import Cache, features

    calls = []
    monkeypatch.setattr(features, "keep_freed_memory", lambda: calls.append(1) or True)
    features.extract_features(Cache.open(tiny_cache), tmp_path / "f", keep_heap=keep)
    assert calls == ([1] if keep else [])


def test_features_refuses_an_unknown_heap_before_writing(tiny_cache, tmp_path):
    from typer.testing import CliRunner

    from steertime.cli import app

    out = tmp_path / "f"
    r = CliRunner().invoke(app, ["features", str(tiny_cache), "--out", str(out), "--heap", "x"])
    assert r.exit_code != 0 and "--heap must be keep or system, got 'x'" in r.output
    assert not out.exists()
