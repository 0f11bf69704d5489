"""A private model store with tiny, briefly trained scale-hyperprior models (shared by
tests/test_hyperprior.py and tests/test_ratecontrol.py; the real ``checkpoints/`` is never touched).
``hp_home`` is its root, ``hp_store`` the ``Store`` that tests pass to the library.

* ``tinyhp``: gain units over three λ levels, one checkpoint for every quality (trained 60 steps);
* ``tinyhp-fixed``: no gain units, qualities 1 and 2 shipped as separate checkpoints;
* the repository's shipped default model (``store.DEFAULT_MODEL``), copied, so the default still
  resolves (the fuzz harness's worker builds its seeds with it), and ``factorized-gdn`` (one
  checkpoint per quality, one latent part) and ``checkerboard-gdn`` (three latent parts), copied
  too, for the tests that name them.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from imgcodec.models import store
from imgcodec.train import TrainOptions, train

from conftest import ROOT, natural_image

TINY_HP = """
description = "tiny scale hyperprior with gain units"
architecture = "hyperprior"
norm = "gdn"
N = 16
M = 24
gain_units = true
# λ above the real ladder's: a 16-channel model trained 60 steps still spends bits at level 1
lambdas = [0.01, 0.05, 0.25]
default_quality = 2
[training]
lr = 2e-3
batch_size = 4
patch = 32
"""

TINY_FIXED = """
description = "tiny scale hyperprior, one checkpoint per quality"
architecture = "hyperprior"
norm = "gdn"
N = 16
M = 24
lambdas = [0.002, 0.05]
default_quality = 1
[training]
lr = 2e-3
batch_size = 4
patch = 32
"""


def tiny_home(tmp_path, configs: dict[str, str]) -> dict:
    """A store root holding ``configs`` (name → TOML) and no checkpoints, two photos to train on,
    and the ``TrainOptions`` arguments every tiny run shares (``home``: that root)."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "checkpoints").mkdir()
    for name, toml in configs.items():
        (home / "models" / f"{name}.toml").write_text(toml)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        Image.fromarray(natural_image(48, 48, seed=i)).save(data / f"{i}.png")
    return dict(home=home, data=data, workers=0, progress=False, threads=1, log_every=10, precision="fp32")


def training_home(tmp_path, monkeypatch, configs: dict[str, str]) -> dict:
    """``tiny_home``, with ``$IMGCODEC_HOME`` set to its root too: for a test that also runs the
    command line in-process, whose store is the one that variable names."""
    common = tiny_home(tmp_path, configs)
    monkeypatch.setenv("IMGCODEC_HOME", str(common["home"]))
    return common


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models run fastest on one thread, above all on a machine with busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hp_home(tmp_path_factory):
    base = tmp_path_factory.mktemp("hp")
    home = base / "home"
    (home / "models").mkdir(parents=True)
    (home / "checkpoints").mkdir()
    (home / "models" / "tinyhp.toml").write_text(TINY_HP)
    (home / "models" / "tinyhp-fixed.toml").write_text(TINY_FIXED)
    copied = sorted({store.DEFAULT_MODEL, "factorized-gdn", "checkerboard-gdn"})
    for name in copied:
        shutil.copy(ROOT / "models" / f"{name}.toml", home / "models")
    real = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    shipped = [e for e in real if e["model"] in copied]
    for e in shipped:
        shutil.copy(ROOT / "checkpoints" / e["file"], home / "checkpoints")
    (home / "checkpoints" / "manifest.json").write_text(json.dumps({"format": 1, "checkpoints": shipped}))
    data = base / "imgs"
    data.mkdir()
    for i in range(3):
        Image.fromarray(natural_image(48, 40 + 8 * i, seed=i)).save(data / f"{i}.png")
    threads = torch.get_num_threads()
    common = dict(home=home, data=data, workers=0, progress=False, ship=True, threads=1, log_every=10,
                  precision="fp32")
    train(TrainOptions(model="tinyhp", out=base / "run", steps=60, **common))
    for q in (1, 2):
        train(TrainOptions(model="tinyhp-fixed", quality=q, out=base / f"run{q}", steps=15, **common))
    yield home
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hp_store(hp_home) -> store.Store:
    """The ``Store`` of ``hp_home``."""
    return store.Store.at(hp_home)
