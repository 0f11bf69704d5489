"""Shared fixtures.  ``../shared`` (training photos, Kodak, anchors) exists in CI and on the
developers' machines but not in a user's clone: tests that need it skip with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCODEC_SHARED", ROOT.parent / "shared"))
SAMPLE = ROOT / "data" / "sample.png"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the project's shared data folder ({SHARED}), absent in a plain clone")
    return SHARED


@pytest.fixture(scope="session")
def kodak_dir(shared_dir) -> Path:
    d = shared_dir / "data" / "kodak"
    if not d.is_dir():
        pytest.skip(f"needs {d}")
    return d


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like (H, W, 3) uint8 test image (gradients plus mild texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([
        128 + 90 * np.sin(xx / max(w, 1) * 3.0 + seed),
        128 + 90 * np.cos(yy / max(h, 1) * 2.5),
        128 + 60 * np.sin((xx + yy) / max(h + w, 1) * 4.0),
    ], axis=-1)
    base += rng.normal(0, 4, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def peak_python_bytes(work) -> int:
    """The peak of the Python allocations (``tracemalloc``) while ``work()`` runs: what a file read
    whole into memory would show, deterministically and without a limit on the process."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_main(capsys, *args):
    """The real CLI entry point, in-process: (exit code, stdout, stderr)."""
    from imgcodec.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run the real ``imgcodec`` entry point in a subprocess (as a user would)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "imgcodec.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
