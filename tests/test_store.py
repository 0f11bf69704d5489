"""The model store as an object with an explicit root: configs, manifest and verified weights read
from it alone, the installation's store untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import imgcodec
from imgcodec.errors import ModelError
from imgcodec.format import bitstream
from imgcodec.models import store
from imgcodec.models.store import Store

from conftest import ROOT, natural_image, peak_python_bytes, run_main

MODEL = "factorized-gdn"


@pytest.fixture()
def copy_home(tmp_path):
    """A store holding factorized-gdn's config and its default quality's weights only."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "checkpoints").mkdir()
    shutil.copy(ROOT / "models" / f"{MODEL}.toml", home / "models")
    q = store.default_store().load_config(MODEL).default_quality
    entry = store.default_store().manifest_entry(MODEL, q)
    shutil.copy(ROOT / "checkpoints" / entry["file"], home / "checkpoints")
    (home / "checkpoints" / "manifest.json").write_text(json.dumps({"format": 1, "checkpoints": [entry]}))
    return home, q


def test_a_store_reads_its_own_root_only(copy_home):
    home, q = copy_home
    s = Store.at(home)
    assert (s.models, s.checkpoints) == (home / "models", home / "checkpoints")
    assert list(s.configs()) == [MODEL]
    assert s.shipped_qualities(MODEL) == [q] and s.quality_grid(MODEL) == [q]
    with pytest.raises(ModelError, match="unknown model 'hyperprior-gdn'"):
        s.load_config("hyperprior-gdn")
    with pytest.raises(ModelError, match=f"no trained weights for model '{MODEL}' quality 2"):
        s.load_shipped(MODEL, 2)
    loaded = s.load_shipped(MODEL)  # at its default quality
    assert (loaded.config.name, loaded.quality) == (MODEL, q)
    assert loaded.sha256 == store.default_store().load_shipped(MODEL, q).sha256
    if store.DEFAULT_MODEL != MODEL:  # the installation's default model is not in this root
        with pytest.raises(ModelError, match=f"unknown model '{store.DEFAULT_MODEL}' \\(known: {MODEL}\\)"):
            s.load_shipped()
    else:
        assert s.load_shipped().sha256 == loaded.sha256


def test_each_load_is_the_callers_own_module(copy_home):
    """Two loads share no state: moving one model or training it leaves the other as loaded; a
    ``cached()`` store hands its owner the same module again, another owner its own."""
    home, q = copy_home
    s = Store.at(home)
    a, b = s.load_shipped(MODEL, q), s.load_shipped(MODEL, q)
    assert a.model is not b.model and a.sha256 == b.sha256

    def state(m):
        return [(p.dtype, p.requires_grad) for p in m.parameters()]

    as_loaded = state(b.model)
    assert as_loaded[0] == (torch.float32, True)
    a.model.to(dtype=torch.float64).requires_grad_(False)
    assert state(a.model)[0] == (torch.float64, False)
    assert state(b.model) == as_loaded == state(s.load_shipped(MODEL, q).model)
    mine, theirs = s.cached(), s.cached()
    assert mine.cached() is mine and (mine.models, mine.checkpoints) == (s.models, s.checkpoints)
    assert mine.load_shipped(MODEL, q).model is mine.load_shipped(MODEL).model
    assert theirs.load_shipped(MODEL, q).model is not mine.load_shipped(MODEL, q).model
    assert not hasattr(store, "load_shipped") and not hasattr(store, "read_manifest")  # no store but a root's


def test_ship_writes_the_file_and_its_manifest_entry(copy_home, tmp_path):
    """``Store.ship`` copies a checkpoint in under its model's name and records it with its sha256;
    shipping the same (model, quality) again replaces the entry, and the next load is the new file."""
    home, q = copy_home
    s = Store.at(home)
    first = s.load_shipped(MODEL, q)
    pos = first.config.stored(q)  # what the checkpoint, the manifest and the file's name number
    assert pos == q - 1  # factorized-gdn's ladder starts at the scale's second λ
    src = tmp_path / "final.safetensors"
    digest = store.save_checkpoint(first.model, src, quality=pos, steps=7)
    assert s.ship(src, MODEL, q, {"quality": pos, "steps": 7}, {"note": "x"}) == f"{MODEL}-q{pos}.safetensors"
    assert s.read_manifest() == [{"model": MODEL, "quality": pos, "file": f"{MODEL}-q{pos}.safetensors",
                                  "sha256": digest, "steps": 7, "note": "x"}]
    assert (home / "checkpoints" / f"{MODEL}-q{pos}.safetensors").read_bytes() == src.read_bytes()
    again = s.load_shipped(MODEL, q)
    assert again.sha256 == digest != first.sha256 and again.meta["steps"] == 7 and again.quality == q


def test_encode_and_decode_through_an_explicit_store(copy_home):
    home, q = copy_home
    s = Store.at(home)
    rgb = natural_image(40, 56, seed=4)
    data = imgcodec.encode(rgb, model=MODEL, store=s)
    assert data == imgcodec.encode(rgb, model=MODEL)  # the same weights: the same bytes
    assert bitstream.unpack(data).header.quality == s.load_config(MODEL).stored(q)
    assert np.array_equal(np.asarray(imgcodec.decode(data, store=s)), np.asarray(imgcodec.decode(data)))
    other = imgcodec.encode(rgb, model=MODEL, quality=6)
    with pytest.raises(ModelError, match="this file needs model 'factorized-gdn' quality 6"):
        imgcodec.decode(other, store=s)


def test_the_default_store_is_the_installation_or_imgcodec_home(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGCODEC_HOME", raising=False)
    assert store.default_store() == store.installed_store() == Store.at(ROOT)
    monkeypatch.setenv("IMGCODEC_HOME", str(tmp_path))
    assert store.default_store() == Store.at(tmp_path)


def _write_manifest(home, data) -> None:
    (home / "checkpoints" / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize("manifest, says", [
    ({"checkpoints": [{}]}, "entry 1: 'model' is missing"),
    (["x"], "not an object with a list of 'checkpoints'"),
    ({"a": 1}, "not an object with a list of 'checkpoints'"),
    ({"checkpoints": ["x"]}, "entry 1 is not an object"),
    ({"checkpoints": [{"model": MODEL, "quality": 4, "sha256": "0" * 64}]}, "entry 1: 'file' must be a file name"),
    ({"checkpoints": [{"model": MODEL, "quality": "4", "file": "a.safetensors", "sha256": "0" * 64}]},
     "entry 1: 'quality' is missing or not a whole number"),
    ({"checkpoints": [{"model": MODEL, "quality": 4, "file": "a.safetensors", "sha256": "abc"}]},
     "entry 1: 'sha256' is missing"),
])
def test_a_malformed_manifest_is_one_line(monkeypatch, capsys, copy_home, tmp_path, manifest, says):
    home, _ = copy_home
    _write_manifest(home, manifest)
    monkeypatch.setenv("IMGCODEC_HOME", str(home))
    photo = tmp_path / "p.png"
    Image.fromarray(natural_image(16, 16)).save(photo)
    for args in (["encode", photo, tmp_path / "p.bin", "--model", MODEL], ["models"]):
        code, _, err = run_main(capsys, *args)
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"imgcodec: error: checkpoint manifest {home / 'checkpoints' / 'manifest.json'} is "
                              "malformed") and says in err, err
    assert not (tmp_path / "p.bin").exists()


@pytest.mark.parametrize("file", ["/etc/passwd", "/dev/zero", "../models/factorized-gdn.toml", "a/b.safetensors",
                                  ".hidden", ""])
def test_a_manifest_file_is_a_plain_name_inside_the_store(copy_home, file):
    home, q = copy_home
    entry = store.default_store().manifest_entry(MODEL, q)
    _write_manifest(home, {"format": 1, "checkpoints": [dict(entry, file=file)]})
    with pytest.raises(ModelError, match="'file' must be a file name inside the checkpoints folder"):
        Store.at(home).load_shipped(MODEL, q)


def test_checkpoint_reads_are_bounded_and_regular_files_only(copy_home):
    """A checkpoint is hashed in blocks before it is held: a file that is not the shipped one costs
    no more memory than a block, one larger than the cap is refused by its size unread, and only a
    regular file is read (a link in the store to /dev/zero is refused, not read forever)."""
    home, q = copy_home
    entry = store.default_store().manifest_entry(MODEL, q)
    path = home / "checkpoints" / entry["file"]
    s = Store.at(home)
    s.load_shipped(MODEL, q)  # torch and safetensors imported before anything is measured
    os.truncate(path, 64 << 20)  # 64 MiB (sparse): not the shipped bytes

    def tampered():
        with pytest.raises(ModelError, match="does not match its manifest sha256"):
            s.load_shipped(MODEL, q)

    assert peak_python_bytes(tampered) < 4 << 20
    os.truncate(path, store.MAX_CHECKPOINT_BYTES + 1)

    def huge():
        with pytest.raises(ModelError, match=f"has {store.MAX_CHECKPOINT_BYTES + 1} bytes, more than a checkpoint"):
            s.load_shipped(MODEL, q)

    assert peak_python_bytes(huge) < 1 << 20
    with pytest.raises(ModelError, match="more than a checkpoint may have"):
        store.load_checkpoint_file(path)  # without a manifest hash, the same cap
    path.unlink()
    path.symlink_to("/dev/zero")
    # first where a regression would read forever: a process of its own, its memory and time capped
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))\n"
            "from imgcodec.models import store\n"
            "try:\n    store.sha256_file(sys.argv[1])\nexcept store.ModelError as exc:\n    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert r.stdout == f"checkpoint {path} is not a regular file\n", r.stderr[-500:]
    with pytest.raises(ModelError, match="is not a regular file"):
        s.load_shipped(MODEL, q)


def test_an_empty_model_name_is_not_the_default(capsys, tmp_path):
    """``--model ''`` (and ``model=""``) is an unknown model, one line, not the default model."""
    from imgcodec.errors import CodecError

    photo = tmp_path / "p.png"
    Image.fromarray(natural_image(16, 16)).save(photo)
    with pytest.raises(CodecError, match="unknown model ''"):
        imgcodec.encode(photo, model="")
    for args in (["encode", photo, tmp_path / "p.bin"], ["compare-images", photo, "--size", "4KB", "-o",
                                                          tmp_path / "c.html"],
                 ["eval", "--data", tmp_path, "-o", tmp_path / "e.json"], ["report", "--data", tmp_path]):
        code, _, err = run_main(capsys, *args, "--model", "")
        assert code == 1 and err.count("\n") == 1 and err.startswith("imgcodec: error: unknown model ''"), err
    assert not (tmp_path / "p.bin").exists() and not (tmp_path / "c.html").exists()


def test_models_marks_the_default_and_the_widths_of_the_shipped_weights(capsys):
    """`imgcodec models` marks the default model; a model's widths are those of its shipped weights
    (a study's are narrower than its config) and `encode --help` names the default."""
    code, out, _ = run_main(capsys, "models")
    assert code == 0
    assert out.startswith("quality scale (λ, MSE): 1=0.0009, 2=0.0018,")
    heads = {line.split(":")[0]: line for line in out.splitlines()[1:] if not line.startswith(" ")}
    assert [name for name in heads if name.endswith(" [default model]")] == [f"{store.DEFAULT_MODEL} [default model]"]
    home = store.default_store()
    for name, line in heads.items():
        name = name.removesuffix(" [default model]")
        weights = home.shipped_config(name) or home.load_config(name)
        assert f"N={weights.N}, M={weights.M}" in line, line
    narrower = [n for n in heads if (c := home.shipped_config(n)) and c.N != home.load_config(n).N]
    for name in narrower:  # the ablation's variants: N=32 weights of an N=64 config
        config = home.load_config(name)
        assert f"as shipped (N={config.N}, M={config.M} in its config)" in heads[name]
    code, out, _ = run_main(capsys, "encode", "--help")
    assert code == 0 and f"(default: {store.DEFAULT_MODEL};" in " ".join(out.split())
