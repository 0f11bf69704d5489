"""Write the golden files of tests/test_golden.py: for every shipped model, one file encoded from a
crop of data/sample.png at one quality, with the checkpoint that made it and the sha256 of the
pixels it decodes to.

    python scripts/make_golden.py            # after shipping new weights: rewrites tests/golden/

Only entries whose checkpoint changed are rewritten, so that the other models' files stay those
that older versions of the encoder wrote.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT / "tests"))

from test_golden import golden_input, golden_points  # noqa: E402

import imgcodec  # noqa: E402


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    index_path = GOLDEN / "golden.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    image = golden_input()
    points = golden_points()
    for model, quality, entry in points:
        key = f"{model}-q{quality}"
        if index.get(key, {}).get("checkpoint_sha256") == entry["sha256"]:
            if not (GOLDEN / f"{key}.png").exists():  # the reference pixels of an older entry
                data = (GOLDEN / f"{key}.bin").read_bytes()
                _write_pixels(index[key], key, np.asarray(imgcodec.decode(data)))
                print(f"{key}: reference pixels")
            continue
        data = imgcodec.encode(Image.fromarray(image), model=model, quality=quality, metadata="none")
        (GOLDEN / f"{key}.bin").write_bytes(data)
        index[key] = {"model": model, "quality": quality, "checkpoint_sha256": entry["sha256"],
                      "file_sha256": hashlib.sha256(data).hexdigest()}
        _write_pixels(index[key], key, np.asarray(imgcodec.decode(data)))
        print(f"{key}: {len(data)} bytes")
    keep = {f"{m}-q{q}" for m, q, _ in points}
    for key in sorted(set(index) - keep):  # models or qualities no longer shipped
        del index[key]
        for suffix in (".bin", ".png"):
            (GOLDEN / f"{key}{suffix}").unlink(missing_ok=True)
        print(f"{key}: removed")
    index_path.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")


def _write_pixels(entry: dict, key: str, pixels: np.ndarray) -> None:
    """The decoded pixels as a PNG beside the file (the reference the test compares within the
    documented ±1 bound) and their sha256."""
    Image.fromarray(pixels).save(GOLDEN / f"{key}.png", optimize=True)
    entry["pixels_sha256"] = hashlib.sha256(pixels.tobytes()).hexdigest()


if __name__ == "__main__":
    main()
