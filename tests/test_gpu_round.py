"""scripts/gpu_round.sh, rehearsed on the CPU (DEVICE=cpu) as one does before spending device time:
runs side by side, each run's final weights and every log come back in $OUT, a failed run is
reported without stopping the others."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

from imgcodec.models import store

from conftest import ROOT, natural_image


def test_gpu_round_rehearsal_on_the_cpu(tmp_path):
    kit = tmp_path / "kit"
    (kit / "train").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(natural_image(80, 96, seed=i)).save(kit / "train" / f"{i}.webp", lossless=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The script's python3 is this interpreter, through a wrapper, not a symlink: a symlink to a
    # virtual environment's python outside the environment's folder loses its packages.
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    init = ROOT / "checkpoints" / "hyperprior-gdn.safetensors"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OUT=str(out), KIT=str(kit), DEVICE="cpu",
               RUNS=str(tmp_path / "runs"), INIT=str(init), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_round.sh"), "0.02",
         "good:--batch-size 2 --patch 32 --seed 1 --steps 3", "bad:--batch-size 2 --patch 40"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.safetensors", "logs.tgz"]
    loaded = store.load_checkpoint_file(out / "good.safetensors")
    assert loaded.config.name == "hyperprior-gdn"
    assert loaded.meta["steps"] == 3 and loaded.meta["init"] == store.sha256_file(init)
    with tarfile.open(out / "logs.tgz") as tar:
        names = sorted(os.path.basename(n) for n in tar.getnames())
        bad_log = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("bad.log"))).read().decode()
    assert names == ["bad.log", "good.csv", "good.log"]  # a finished run's metrics.csv comes back as NAME.csv
    assert "--patch must be a positive multiple of 16, not 40" in bad_log
    assert "== good:" in proc.stdout and "== bad:" in proc.stdout
    assert np.isfinite(loaded.meta["train_seconds"])
