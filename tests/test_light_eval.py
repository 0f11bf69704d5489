"""`eval`, `compare-images` and `baseline` on the light runtime: no gradient, so no torch — the codec
through ONNX Runtime, MS-SSIM in numpy (``evaluate.ms_ssim_numpy``, pytorch-msssim's function)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imgcodec.eval import evaluate

from conftest import ROOT, natural_image

NO_TORCH = r"""
import json, sys
from imgcodec.cli import cli
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
print("torch" in sys.modules, "compressai" in sys.modules, "pytorch_msssim" in sys.modules)
"""


def test_eval_and_compare_images_on_the_light_runtime_import_no_torch(tmp_path):
    (tmp_path / "data").mkdir()
    Image.fromarray(natural_image(176, 192)).save(tmp_path / "data" / "a.png")
    env = {"IMGCODEC_RUNTIME": "onnx", "PATH": "/usr/bin:/bin"}
    data, photo = str(tmp_path / "data"), str(tmp_path / "data" / "a.png")
    commands = [["eval", "--model", "factorized-relu", "--data", data, "-o", str(tmp_path / "r.json")],
                ["compare-images", photo, "--size", "6KB", "--codecs", "jpeg", "-o", str(tmp_path / "c.html")],
                ["baseline", "--codec", "jpeg", "-q", "50", "--data", data, "-o", str(tmp_path / "j.json")]]
    r = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(commands)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False False False", r.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["environment"]["runtime"] == "onnx"
    rows = res["images"]
    assert rows and all(row["ms-ssim-rgb"] is not None and 0 < row["ms-ssim-rgb"] <= 1 for row in rows)
    assert (tmp_path / "c.html").stat().st_size > 0


def test_what_needs_torch_says_so_on_the_light_runtime(monkeypatch, tmp_path):
    from imgcodec.errors import CodecError

    monkeypatch.setenv("IMGCODEC_RUNTIME", "onnx")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(CodecError, match=r"--refine needs the torch runtime \(pip install 'imgcodec\[train\]'"):
        evaluate.evaluate_model(tmp_path, model="factorized-relu", refine=2)


def test_numpy_ms_ssim_equals_pytorch_msssim():
    torch = pytest.importorskip("torch", reason="the comparison needs imgcodec[train]")
    from pytorch_msssim import ms_ssim

    rng = np.random.default_rng(0)
    for shape in ((161, 170, 3), (181, 203, 3), (256, 384, 3)):
        a = natural_image(*shape[:2], seed=1)
        b = np.clip(a.astype(int) + rng.integers(-12, 13, shape), 0, 255).astype(np.uint8)

        def t(x):
            return torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]

        ref = float(ms_ssim(t(a), t(b), data_range=255.0))
        assert abs(evaluate.ms_ssim_numpy(a, b) - ref) < 1e-5  # pytorch-msssim's window is float32
