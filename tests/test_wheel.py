"""The built wheel carries the configs and the weights: installed into a fresh virtual environment
(no source checkout on its path), it encodes and decodes the same bytes and pixels as the source.

The fresh environment has no system site packages: imgcodec comes from the wheel alone, and its
dependencies (torch, Pillow, …) from the environment running the tests, through a ``.pth`` file that
names that environment's site-packages folders. So it works from a user's virtual environment as
from the system's Python (``--system-site-packages`` would see only the base interpreter's packages)."""

from __future__ import annotations

import os
import shutil
import site
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


def _site_packages() -> list[str]:
    """The folders this interpreter imports installed packages from (a venv's own, and the base
    interpreter's where the venv includes them; the user's, where enabled)."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [f for i, f in enumerate(folders) if Path(f).is_dir() and f not in folders[:i]]


def _build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel`` of ``source``: with this Python's setuptools where it can build (no download),
    else in pip's isolated build environment (setuptools from the package index)."""
    errors = []
    for isolation in (["--no-build-isolation"], []):
        built = _run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", *isolation, "-q", "-w", dist])
        if built.returncode == 0:
            (wheel,) = dist.glob("imgcodec-*.whl")
            return wheel
        errors.append(built.stderr.strip().splitlines()[-1:] or ["?"])
    pytest.skip(f"cannot build a wheel here: no build backend in this Python ({errors[0][0]}) and no package "
                f"index for an isolated build ({errors[1][0]})")


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    # A copy of what the build reads, so that the build's own folders never land in the checkout.
    source = base / "source"
    for name in ("imgcodec", "models", "checkpoints"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel = _build_wheel(source, base / "dist")
    made = _run([sys.executable, "-m", "venv", base / "venv"])
    assert made.returncode == 0, made.stderr
    python = base / "venv" / "bin" / "python"
    where = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    assert where.returncode == 0, where.stderr
    # the dependencies: this environment's folders, after the venv's own (so the wheel's imgcodec wins)
    (Path(where.stdout.strip()) / "outer_environment.pth").write_text("\n".join(_site_packages()) + "\n")
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
