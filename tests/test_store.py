"""The model store as an object with an explicit root: configs, manifest and verified weights read
from it alone, the installation's store untouched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import imgcodec
from imgcodec.errors import ModelError
from imgcodec.format import bitstream
from imgcodec.models import store
from imgcodec.models.store import Store

from conftest import ROOT, natural_image

MODEL = "factorized-gdn"


@pytest.fixture()
def copy_home(tmp_path):
    """A store holding factorized-gdn's config and its default quality's weights only."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "checkpoints").mkdir()
    shutil.copy(ROOT / "models" / f"{MODEL}.toml", home / "models")
    q = store.load_config(MODEL).default_quality
    entry = store.manifest_entry(MODEL, q)
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
    assert loaded.sha256 == store.load_shipped(MODEL, q).sha256
    if store.DEFAULT_MODEL != MODEL:  # the installation's default model is not in this root
        with pytest.raises(ModelError, match=f"unknown model '{store.DEFAULT_MODEL}' \\(known: {MODEL}\\)"):
            s.load_shipped()
    else:
        assert s.load_shipped().sha256 == loaded.sha256


def test_encode_and_decode_through_an_explicit_store(copy_home):
    home, q = copy_home
    s = Store.at(home)
    rgb = natural_image(40, 56, seed=4)
    data = imgcodec.encode(rgb, model=MODEL, store=s)
    assert data == imgcodec.encode(rgb, model=MODEL)  # the same weights: the same bytes
    assert bitstream.unpack(data).header.quality == q
    assert np.array_equal(np.asarray(imgcodec.decode(data, store=s)), np.asarray(imgcodec.decode(data)))
    other = imgcodec.encode(rgb, model=MODEL, quality=6)
    with pytest.raises(ModelError, match="this file needs model 'factorized-gdn' quality 6"):
        imgcodec.decode(other, store=s)


def test_the_default_store_is_the_installation_or_imgcodec_home(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGCODEC_HOME", raising=False)
    assert store.default_store() == store.installed_store() == Store.at(ROOT)
    monkeypatch.setenv("IMGCODEC_HOME", str(tmp_path))
    assert store.default_store() == Store.at(tmp_path)
