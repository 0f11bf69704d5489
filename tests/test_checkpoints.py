"""Checkpoint metadata is checked before any tensor is allocated, and a model id is a registry
name, never a path."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from imgcodec import BitstreamError, ModelError
from imgcodec.format import bitstream
from imgcodec.models import store

from conftest import ROOT
from conftest import run_main as run

GOOD = store.default_store().load_config("factorized-gdn")


def _checkpoint(path, config, extra=None, tensor_bytes=4):
    """A safetensors file written by hand: one float32 tensor and the given metadata."""
    meta = {"format": store.CHECKPOINT_FORMAT,
            "config": config if isinstance(config, str) else json.dumps(config)}
    meta.update(extra or {})
    header = {"__metadata__": meta, "w": {"dtype": "F32", "shape": [tensor_bytes // 4],
                                          "data_offsets": [0, tensor_bytes]}}
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + bytes(tensor_bytes))
    return path


def _config(**changes):
    d = json.loads(GOOD.to_json())
    d.update(changes)
    return d


@pytest.mark.parametrize("config, message", [
    ("{not json", "its config is not JSON"),
    ("[1, 2]", "is not a JSON object"),
    (_config(N="64"), "N = '64'"),
    (_config(M=-3), "M = -3"),
    (_config(N=2000, M=2000), "N = 2000"),
    (_config(hyper_N=10**9), "hyper_N"),
    (_config(lambdas=[]), "lambdas"),
    (_config(lambdas=[0.01, float("nan")]), "lambdas"),
    (_config(lambdas=[0.01] * 1000), "lambdas"),
    (_config(default_quality=99), "default_quality"),
    (_config(norm_options=[1]), "norm_options"),
    (_config(name=None), "name"),
    (_config(N=1024, M=1024), "needs at least"),  # within bounds, but the file cannot hold such weights
])
def test_malformed_or_absurd_config_is_refused_before_building(tmp_path, config, message):
    path = _checkpoint(tmp_path / "c.safetensors", config)
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace("[", r"\[")):
        store.load_checkpoint_file(path)


@pytest.mark.parametrize("extra, message", [({"quality": "{bad"}, "'quality' is not JSON"),
                                            ({"quality": '"4"'}, "quality '4'"),
                                            ({"steps": "nan-ish"}, "'steps' is not JSON")])
def test_malformed_other_metadata(tmp_path, extra, message):
    path = _checkpoint(tmp_path / "c.safetensors", _config(), extra)
    with pytest.raises(ModelError, match=message):
        store.load_checkpoint_file(path)


def test_huge_widths_cost_no_memory_or_time(tmp_path):
    """N = M = 2000 in a 600-byte file: refused in a fraction of a second, in a few MB."""
    path = _checkpoint(tmp_path / "big.safetensors", _config(N=1000, M=1000, hyper_N=1000))
    probe = ("import resource, sys, time\nfrom imgcodec import ModelError\nfrom imgcodec.models import store\nimport torch\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nt = time.perf_counter()\n"
             "try:\n    store.load_checkpoint_file(sys.argv[1])\nexcept ModelError as e:\n    print('refused', e)\n"
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    assert first.startswith("refused") and "needs at least" in first
    seconds, kib = second.split()
    assert float(seconds) < 1.0 and int(kib) < 50 * 1024


@pytest.mark.parametrize("model", [None, "factorized-gdn"], ids=["default", "factorized-gdn"])
def test_a_bad_shipped_checkpoint_is_one_line_through_the_cli(tmp_path, monkeypatch, capsys, model):
    for name in ("models", "checkpoints"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.safetensors"))
    tmp_store = store.Store.at(tmp_path)
    config = tmp_store.load_config(model or store.DEFAULT_MODEL)
    # the checkpoint that encoding at the default quality loads
    entry = tmp_store.manifest_entry(config.name, store.EVERY_QUALITY if config.continuous
                                     else config.default_quality)
    path = _checkpoint(tmp_path / "checkpoints" / entry["file"],
                       dict(json.loads(config.to_json()), N=2000, M=2000))
    entries = [dict(e, sha256=store.sha256_file(path)) if e["file"] == entry["file"] else e
               for e in tmp_store.read_manifest()]
    tmp_store.write_manifest(entries)
    src = ROOT / "data" / "sample.png"
    # the command line, run here in-process, takes its store from the environment
    monkeypatch.setenv("IMGCODEC_HOME", str(tmp_path))
    code, _, err = run(capsys, "encode", *(["--model", model] if model else []), src, tmp_path / "o.bin")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "has invalid metadata: config: N = 2000" in err


def _crafted_file(model_id: str) -> bytes:
    """A CRC-valid version-1 header naming ``model_id`` (written by hand, as an attacker would)."""
    mid = model_id.encode()
    body = b"IMGC" + bytes([1, len(mid)]) + mid + bytes(8) + bytes([4]) + struct.pack(">IIBB", 16, 16, 0, 1)
    body += struct.pack(">I", 8) + bytes(8)
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("model_id", ["../pyproject", "..", "a/b", "/etc/passwd", ".hidden", "x y", "a\\b"])
def test_a_model_id_is_never_a_path(model_id, capsys, tmp_path):
    with pytest.raises(BitstreamError, match="bad model id"):
        bitstream.unpack(_crafted_file(model_id))
    with pytest.raises(ModelError, match="unknown model"):
        store.default_store().load_config(model_id)
    (tmp_path / "x.bin").write_bytes(_crafted_file(model_id))
    code, _, err = run(capsys, "decode", tmp_path / "x.bin", tmp_path / "x.png")
    assert code == 1 and err.strip() == "imgcodec: error: corrupt header: bad model id"


def test_registry_names_still_pass():
    for name in store.default_store().configs():
        assert bitstream.valid_model_id(name)
        assert store.default_store().load_config(name).name == name


def test_half_weights_halve_the_file_and_load_as_their_values(tmp_path):
    """``write_half_checkpoint`` stores the convolutions' weights in float16 and nothing else: the
    file is about half the size, its metadata unchanged, and it loads (float32 modules) to a model
    whose weights are the float16 values, which codes an image as the float32 weights do to within
    a hair (fewer bytes than 0.5 % apart, PSNR within 0.05 dB)."""
    import torch

    from imgcodec.codec.api import code_array
    from imgcodec.eval.evaluate import psnr

    from conftest import natural_image

    src = ROOT / "checkpoints" / "checkerboard-gdn.safetensors"
    dst = tmp_path / "half.safetensors"
    digest = store.write_half_checkpoint(src, dst)
    assert dst.stat().st_size < 0.6 * src.stat().st_size  # the entropy tables (int32) keep their size
    full, config, meta, _ = store.read_checkpoint(src)
    half, config_h, meta_h, digest_h = store.read_checkpoint(dst, expected_sha256=digest)
    assert (config_h, meta_h) == (config, meta) and digest_h == digest
    converted = [k for k, v in full.items() if k.endswith(".weight") and v.ndim == 4]
    assert "context_prediction.weight" in converted and "g_s.0.weight" in converted
    for key, t in full.items():
        assert half[key].dtype == (torch.float16 if key in converted else t.dtype), key
        assert torch.equal(half[key], t.half() if key in converted else t), key
    a, b = store.load_checkpoint_file(src).model, store.load_checkpoint_file(dst).model
    assert all(p.dtype == torch.float32 for p in b.parameters())
    assert torch.equal(b.state_dict()["g_a.0.weight"], full["g_a.0.weight"].half().float())
    rgb = natural_image(64, 96, seed=3)
    (size_a, out_a), (size_b, out_b) = code_array(a, rgb, quality=5), code_array(b, rgb, quality=5)
    assert abs(size_b - size_a) <= 0.005 * size_a + 2 and abs(psnr(out_b, rgb) - psnr(out_a, rgb)) < 0.05


def test_half_weights_refuse_a_weight_beyond_float16():
    import torch

    with pytest.raises(ValueError, match="g_a.0.weight holds a weight beyond float16's range"):
        store.half_weights({"g_a.0.weight": torch.full((1, 1, 1, 1), 7e4), "x": torch.zeros(2)})
