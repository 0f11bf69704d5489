"""Long work shows its progress: the steps of encoder-side refinement are counted (a tqdm bar on
standard error, when that is a terminal), and the refinement tells whoever asks after each step."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from PIL import Image

import imgcodec
from imgcodec.codec import refine

from conftest import ROOT, natural_image

MODEL = "factorized-gdn"


def test_refinement_tells_each_step():
    told = []
    rgb = natural_image(16, 16, seed=1)
    with refine.reporting(lambda step, steps: told.append((step, steps))):
        data = imgcodec.encode(rgb, model=MODEL, refine=3)
    assert told == [(1, 3), (2, 3), (3, 3)]
    told.clear()
    assert imgcodec.encode(rgb, model=MODEL, refine=3) == data and told == []  # outside the block: nobody


def test_encode_refine_counts_its_steps_on_a_terminal(tmp_path):
    """`imgcodec encode --refine 3` with standard error on a terminal (a pseudo-terminal here) shows
    a bar that reaches 3/3; the file is the one the API writes."""
    src = tmp_path / "in.png"
    Image.fromarray(natural_image(16, 16, seed=2)).save(src)
    out = tmp_path / "out.bin"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        p = subprocess.Popen([sys.executable, "-m", "imgcodec.cli", "encode", str(src), str(out), "--model", MODEL,
                              "--refine", "3"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=slave)
    finally:
        os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert p.wait(timeout=600) == 0, shown[-2000:]
    text = shown.decode(errors="replace")
    assert "refine" in text and "3/3" in text, text[-500:]
    assert out.read_bytes() == imgcodec.encode(src, model=MODEL, refine=3)
