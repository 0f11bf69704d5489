"""Golden files: every shipped model encodes a fixed image to the same bytes, and the files written
by the encoder as it was when the weights were shipped decode to the same pixels — exactly on the
machine that wrote them, and elsewhere within the bound docs/bitstream.md states for the float32
synthesis (±1 in at most 0.1 % of the values: another CPU's kernels sum in another order).

A change to the encoder, the decoder, the bitstream or the coder that alters one byte, or one pixel
by more than that, fails here.  Shipping new weights for a model changes its files by design: ``scripts/make_golden.py``
rewrites the entries of the checkpoints that changed (the test says so).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcodec
from imgcodec.models import store

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


def golden_input() -> np.ndarray:
    """A 64×96 crop of the bundled sample: small files, every model's stride padding exercised."""
    return np.asarray(Image.open(ROOT / "data" / "sample.png").convert("RGB"))[37:101, 51:147]


def golden_points() -> list[tuple[str, int, dict]]:
    """One (model, quality, manifest entry) per shipped model: its default quality where shipped."""
    points = []
    for name, config in sorted(store.default_store().configs().items()):
        qualities = store.default_store().shipped_qualities(name)
        if not qualities:
            continue
        q = config.default_quality if config.default_quality in qualities else qualities[len(qualities) // 2]
        entry = store.default_store().manifest_entry(name, store.EVERY_QUALITY if config.continuous else q)
        points.append((name, q, entry))
    return points


def _index() -> dict:
    return json.loads((GOLDEN / "golden.json").read_text())


POINTS = golden_points()


def test_every_shipped_model_has_a_golden_file():
    assert sorted(f"{m}-q{q}" for m, q, _ in POINTS) == sorted(_index())


@pytest.mark.parametrize("model,quality,entry", POINTS, ids=[f"{m}-q{q}" for m, q, _ in POINTS])
def test_encode_writes_the_golden_bytes_and_decode_the_golden_pixels(model, quality, entry):
    golden = _index()[f"{model}-q{quality}"]
    assert golden["checkpoint_sha256"] == entry["sha256"], (
        f"{model}: the shipped weights changed; rewrite its golden file with `python scripts/make_golden.py`")
    stored = (GOLDEN / f"{model}-q{quality}.bin").read_bytes()
    assert hashlib.sha256(stored).hexdigest() == golden["file_sha256"]
    reference = np.asarray(Image.open(GOLDEN / f"{model}-q{quality}.png"))
    assert hashlib.sha256(reference.tobytes()).hexdigest() == golden["pixels_sha256"]
    decoded = np.asarray(imgcodec.decode(stored))
    assert decoded.shape == reference.shape
    diff = np.abs(decoded.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size, (int(diff.max()), int(np.count_nonzero(diff)))
    data = imgcodec.encode(Image.fromarray(golden_input()), model=model, quality=quality, metadata="none")
    assert data == stored
