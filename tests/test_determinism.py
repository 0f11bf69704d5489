"""Reproducibility: the same input gives the same bytes across runs and across thread counts.

Each thread count runs in its own process (``torch.set_num_threads`` before any work), as a user's
separate runs would.  What is and is not guaranteed across devices is in docs/bitstream.md: the
file and the decoded latent ŷ are exact; the decoded pixels x̂ = g_s(ŷ) are float and are exact
only for the same device, library and thread count (here: compared, not required, across threads).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imgcodec.models.store import DEFAULT_MODEL

from conftest import ROOT

SCRIPT = r"""
import hashlib, json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from conftest import natural_image
from PIL import Image
import imgcodec
from imgcodec.codec import tiling
from imgcodec.format import bitstream
from imgcodec.models import store

img = Image.fromarray(natural_image(200, 296, seed=11))
whole = tiling.TILE_THRESHOLD_PIXELS, tiling.DEFAULT_TILE
results = {}
for name in json.loads(sys.argv[3]):
    model_name = name or None  # "": the default model
    tiling.TILE_THRESHOLD_PIXELS, tiling.DEFAULT_TILE = whole
    out = results[name] = {}
    data = imgcodec.encode(img, model=model_name)
    out["file"] = hashlib.sha256(data).hexdigest()
    out["again"] = hashlib.sha256(imgcodec.encode(img, model=model_name)).hexdigest()
    s = bitstream.unpack(data)
    out["model"] = s.header.model
    quality = store.default_store().load_config(s.header.model).from_stored(s.header.quality)
    model = store.default_store().load_shipped(s.header.model, quality).model
    y_hat = model.decompress_latents(s.parts[:model.latent_parts], (13, 19), model.rate_point(quality))  # ŷ
    out["latent"] = hashlib.sha256(y_hat.numpy().tobytes()).hexdigest()
    out["pixels"] = hashlib.sha256(np.asarray(imgcodec.decode(data)).tobytes()).hexdigest()
    tiling.TILE_THRESHOLD_PIXELS, tiling.DEFAULT_TILE = 0, 5  # the tiled path too
    out["tiled_file"] = hashlib.sha256(imgcodec.encode(img, model=model_name)).hexdigest()
print(json.dumps(results))
"""

# The default model (""), the other checkerboard model and the factorized model, whose file has one
# latent part.
MODELS = ["", "checkerboard-gdn", "factorized-gdn"]


def _run(threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), str(ROOT / "tests"), json.dumps(MODELS)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {"1": _run(1), "2": _run(2), "1 again": _run(1)}


def test_the_default_model_is_the_store_default(runs):
    assert runs["1"][""]["model"] == DEFAULT_MODEL


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m or "default")
def test_same_bytes_across_runs(runs, model):
    one, again = runs["1"][model], runs["1 again"][model]
    assert one["file"] == one["again"] == again["file"]
    assert one["pixels"] == again["pixels"]  # same threads: the decoded image is exact too


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m or "default")
def test_same_bytes_across_thread_counts(runs, model):
    assert runs["1"][model]["file"] == runs["2"][model]["file"]
    assert runs["1"][model]["latent"] == runs["2"][model]["latent"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m or "default")
def test_tiled_encoding_gives_the_same_bytes(runs, model):
    for r in runs.values():
        assert r[model]["tiled_file"] == r[model]["file"]
