"""The built wheel carries the configs and the weights: installed into a fresh virtual environment
(no source checkout on its path), it encodes and decodes the same bytes and pixels as the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcodec

from conftest import ROOT, natural_image

pytestmark = pytest.mark.slow


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IMGCODEC_HOME")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=900, **kw)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    # A copy of what the build reads, so that the build's own folders never land in the checkout.
    source = base / "source"
    for name in ("imgcodec", "models", "checkpoints"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # --no-build-isolation: the build uses this Python's setuptools, so no download is needed.
    built = _run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q",
                  "-w", base / "dist"])
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here (setuptools and wheel without network?): {built.stderr[-300:]}")
    (wheel,) = (base / "dist").glob("imgcodec-*.whl")
    # --system-site-packages: torch, compressai and the rest from this machine, imgcodec from the wheel.
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", base / "venv"])
    assert made.returncode == 0, made.stderr
    python = base / "venv" / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "--no-deps", "-q", wheel])
    assert installed.returncode == 0, installed.stderr
    return python


def test_the_wheel_installs_its_models_and_weights(venv_python, tmp_path):
    probe = ("import imgcodec; from imgcodec.models import store; s = store.default_store(); "
             "print(imgcodec.__file__); print(s.models); print(sorted(s.configs())); "
             "print(len(s.read_manifest()))")
    r = _run([venv_python, "-c", probe], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, models, names, entries = r.stdout.strip().splitlines()
    venv = venv_python.parent.parent
    assert Path(where).is_relative_to(venv) and Path(models).is_relative_to(venv), r.stdout
    assert Path(models).name == "_models"
    assert names == str(sorted(p.stem for p in (ROOT / "models").glob("*.toml")))
    assert int(entries) == len(list((ROOT / "checkpoints").glob("*.safetensors")))


def test_the_installed_cli_encodes_what_the_source_encodes(venv_python, tmp_path):
    rgb = natural_image(48, 64, seed=7)
    src = tmp_path / "in.png"
    Image.fromarray(rgb).save(src)
    cli = venv_python.parent / "imgcodec"
    for model in ("factorized-gdn", "meanscale-gdn"):
        out, back = tmp_path / f"{model}.bin", tmp_path / f"{model}.png"
        r = _run([cli, "encode", src, out, "--model", model], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == imgcodec.encode(rgb, model=model)
        r = _run([cli, "decode", out, back], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.asarray(Image.open(back)), np.asarray(imgcodec.decode(out.read_bytes())))
