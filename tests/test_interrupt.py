"""``kill -9`` of a real ``imgcodec encode`` / ``decode`` (single and batch) at various moments.

After any kill, each output path holds either what it held before (nothing, or the user's old
file) or the complete new output — never a partial file.  The only thing a kill can leave is the
hidden temporary ``.NAME.XXXXXXXX.tmp`` beside an output (SIGKILL runs no clean-up); it never takes
an output's name and a rerun succeeds beside it (docs/reliability.md).

Two kinds of kill: at timed moments of a real run, and at the exact critical points — just before
and just after the rename (``-f``) or the hard link (a new output) that publishes an output — by a
wrapper that turns ``os.replace`` and ``os.link`` into a SIGKILL of its own process and then runs
the real CLI.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, natural_image

SENTINEL = b"the user's precious old file\n"
TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")

# Runs the real CLI with the calls that publish an output patched (os.replace, which replaces a file
# with -f, and os.link, which takes a new output's name): SIGKILL on call number N, before or after.
WRAPPER = r"""
import os, runpy, signal, sys
when, n = sys.argv[1], int(sys.argv[2])
calls = [0]
def killing(real):
    def publish(src, dst):
        calls[0] += 1
        if calls[0] == n and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if calls[0] == n and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    return publish
os.replace, os.link = killing(os.replace), killing(os.link)
sys.argv = ["imgcodec"] + sys.argv[3:]
runpy.run_module("imgcodec.cli", run_name="__main__")
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgcodec.cli", *args]


def _killed_at(when: str, n: int, *args: str) -> None:
    r = subprocess.run([sys.executable, "-c", WRAPPER, when, str(n), *args], cwd=ROOT, capture_output=True,
                       timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]


def _kill_after(seconds: float, *args: str) -> None:
    p = subprocess.Popen(_cli(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()


def _leftovers(folder: Path, expected: set[str]) -> list[str]:
    """Names in ``folder`` besides ``expected``; each must be a hidden temporary of an output."""
    extra = sorted(p.name for p in folder.iterdir() if p.name not in expected)
    for name in extra:
        m = TEMP.match(name)
        assert m, f"unexpected file {name} after a kill"
    return extra


def _clean_temps(folder: Path) -> None:
    for p in folder.iterdir():
        if TEMP.match(p.name):
            p.unlink()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Inputs, their expected outputs (the encoded bytes made in this process: the CLI writes the
    same bytes at any thread count), and
    the duration of one real ``imgcodec encode`` run."""
    import imgcodec

    d = tmp_path_factory.mktemp("interrupt")
    ref = d / "ref"
    ref.mkdir()
    for i, (h, w) in enumerate([(384, 512), (200, 300), (160, 240)]):
        Image.fromarray(natural_image(h, w, seed=i)).save(d / f"img{i}.png")
        (ref / f"img{i}.bin").write_bytes(imgcodec.encode(d / f"img{i}.png"))
    # The decoded reference comes from a real process too: the pixels of the float synthesis may
    # differ in the last bit with the thread count, and other tests change this process's.
    subprocess.run(_cli("decode", str(ref / "img0.bin"), str(ref / "img0.png")), cwd=ROOT, check=True, timeout=600)
    out = d / "cli.bin"
    t0 = time.perf_counter()
    subprocess.run(_cli("encode", str(d / "img0.png"), str(out)), cwd=ROOT, check=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert out.read_bytes() == (ref / "img0.bin").read_bytes()
    return d, seconds


def test_kill_at_timed_moments_of_encode(work, tmp_path):
    src, seconds = work
    ref = (src / "ref" / "img0.bin").read_bytes()
    out = tmp_path / "out.bin"
    for fraction in (0.5, 0.9):
        out.write_bytes(SENTINEL)
        _kill_after(fraction * seconds, "encode", "-f", str(src / "img0.png"), str(out))
        content = out.read_bytes()
        assert content in (SENTINEL, ref), f"partial output after a kill at {fraction:.2f} of the run"
        _leftovers(tmp_path, {"out.bin"})
        _clean_temps(tmp_path)


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_at_the_rename_of_encode(work, tmp_path, when):
    src, _ = work
    ref = (src / "ref" / "img0.bin").read_bytes()
    out = tmp_path / "out.bin"
    out.write_bytes(SENTINEL)
    _killed_at(when, 1, "encode", "-f", str(src / "img0.png"), str(out))
    assert out.read_bytes() == (SENTINEL if when == "before" else ref)
    temps = _leftovers(tmp_path, {"out.bin"})
    if when == "after":
        assert temps == []
        return
    # The complete new file is left under its hidden temporary name, never under out.bin ...
    assert len(temps) == 1 and TEMP.match(temps[0])["name"] == "out.bin"
    assert (tmp_path / temps[0]).read_bytes() == ref
    # ... and a rerun beside the stale temporary works (the same code path, in this process).
    from imgcodec.codec import api as codec

    out.unlink()
    codec.encode_file(src / "img0.png", out)
    assert out.read_bytes() == ref


def test_kill_in_the_middle_of_a_batch(work, tmp_path):
    """Killed around publishing an output of a batch: outputs before it complete, the others absent."""
    src, seconds = work
    outdir = tmp_path / "out"
    inputs = [str(src / f"img{i}.png") for i in (1, 2, 0)]
    _killed_at("before", 2, "encode", *inputs, "-o", str(outdir))
    assert (outdir / "img1.bin").read_bytes() == (src / "ref" / "img1.bin").read_bytes()
    assert not (outdir / "img2.bin").exists() and not (outdir / "img0.bin").exists()
    _leftovers(outdir, {"img1.bin"})
    # Batch decode killed just after publishing its first output: that one is complete.
    decoded = tmp_path / "decoded"
    bins = [str(src / "ref" / n) for n in ("img0.bin", "img1.bin", "img2.bin")]
    _killed_at("after", 1, "decode", *bins, "-o", str(decoded))
    assert (decoded / "img0.png").read_bytes() == (src / "ref" / "img0.png").read_bytes()
    assert not (decoded / "img1.png").exists() and not (decoded / "img2.png").exists()
    # killed between the link and the removal of the temporary name: at most that hidden name is left
    assert [TEMP.match(t)["name"] for t in _leftovers(decoded, {"img0.png"})] in ([], ["img0.png"])


def test_kill_during_decode_never_touches_an_existing_file(work, tmp_path):
    src, _ = work
    out = tmp_path / "out.png"
    out.write_bytes(SENTINEL)
    _killed_at("before", 1, "decode", "-f", str(src / "ref" / "img0.bin"), str(out))
    assert out.read_bytes() == SENTINEL
    _leftovers(tmp_path, {"out.png"})
    assert (src / "ref" / "img0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
