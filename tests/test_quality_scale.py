"""Qualities have one meaning across models: quality k is λ = LAMBDA_SCALE[k - 1] in every model whose
ladder lies on the scale, while files, the manifest, checkpoints and stored configs keep the
position on the model's own ladder (``ModelConfig.stored`` / ``from_stored``), so every file written
before decodes unchanged."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcodec
from imgcodec.errors import ModelError
from imgcodec.eval import report
from imgcodec.format import bitstream
from imgcodec.models import store
from imgcodec.models.config import LAMBDA_SCALE, ModelConfig, scale_offset

from conftest import ROOT, natural_image, run_main

HOME = store.default_store()
CONFIGS = HOME.configs()
GOLDEN = Path(__file__).parent / "golden"
# every (model, quality) a shipped config takes, on the common scale
LEVELS = [(name, q) for name, c in CONFIGS.items() for q in c.qualities]


def test_every_shipped_ladder_is_a_run_of_the_scale():
    assert sorted(LAMBDA_SCALE) == list(LAMBDA_SCALE) and len(set(LAMBDA_SCALE)) == len(LAMBDA_SCALE)
    for name, config in CONFIGS.items():
        assert config.on_scale, name
        assert list(config.qualities) == list(range(config.offset + 1, config.offset + len(config.lambdas) + 1))
    # the checkerboard models start at the scale's first λ, the others at its second
    assert {n: c.offset for n, c in CONFIGS.items() if n.startswith("checkerboard")} == {
        "checkerboard-gdn": 0, "checkerboard-gdn-wide": 0}
    assert {c.offset for n, c in CONFIGS.items() if not n.startswith("checkerboard")} == {1}


@pytest.mark.parametrize("name,quality", LEVELS, ids=[f"{n}-q{q}" for n, q in LEVELS])
def test_the_same_quality_is_the_same_lambda_in_every_model(name, quality):
    config = CONFIGS[name]
    assert config.lmbda(quality) == pytest.approx(LAMBDA_SCALE[quality - 1], rel=1e-9)
    assert config.lambdas[config.stored(quality) - 1] == pytest.approx(LAMBDA_SCALE[quality - 1], rel=1e-9)
    assert config.from_stored(config.stored(quality)) == quality


def test_every_model_s_default_is_lambda_0_013():
    for name, config in CONFIGS.items():
        assert config.default_quality == 5 and config.lmbda(config.default_quality) == pytest.approx(0.013), name


def test_a_rate_point_carries_the_scale_s_lambda():
    for name in ("factorized-gdn", "hyperprior-gdn", "checkerboard-gdn"):
        loaded = HOME.load_shipped(name, 4)
        point = loaded.model.rate_point(4)
        assert (loaded.quality, point.quality) == (4, 4) and point.lmbda == pytest.approx(0.0067), name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_out_of_range_quality_names_the_model_s_range(name):
    config = CONFIGS[name]
    lo, hi = config.qualities.start, config.qualities.stop - 1
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ModelError, match=rf"^quality {bad} is out of range for model '{name}' \(valid: {lo}\.\.{hi}\)$"):
            config.normalize_quality(bad)


def test_the_cli_refuses_quality_1_of_a_model_that_starts_at_2(capsys, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(natural_image(16, 16)).save(src)
    code, _, err = run_main(capsys, "encode", src, tmp_path / "a.bin", "--model", "meanscale-gdn", "-q", "1")
    assert code != 0 and "quality 1 is out of range for model 'meanscale-gdn' (valid: 2..7)" in err
    assert not (tmp_path / "a.bin").exists()


def test_a_ladder_off_the_scale_numbers_its_levels_from_1(capsys):
    d = dict(name="own", architecture="factorized", norm="gdn", N=8, M=8, lambdas=[0.002, 0.01, 0.05],
             default_quality=2)
    config = ModelConfig.from_dict(d)
    assert scale_offset(config.lambdas) is None and not config.on_scale
    assert (list(config.qualities), config.default_quality, config.stored(3), config.lmbda(1)) == ([1, 2, 3], 2, 3, 0.002)
    with pytest.raises(ModelError, match="valid: 1..3, the positions of its λ ladder, which is not on the common scale"):
        config.normalize_quality(4)
    # a ladder that skips a value of the scale is not a run of it
    assert scale_offset([0.0018, 0.0067, 0.013]) is None and scale_offset([0.0067, 0.013]) == 3


def test_stored_configs_hold_the_position_of_the_default():
    """TOML and JSON (a checkpoint's metadata, a result file's settings) store ``default_quality`` as
    the position on the ladder; in memory it is on the common scale."""
    toml = (ROOT / "models" / "meanscale-gdn.toml").read_text()
    assert "\ndefault_quality = 4" in toml
    config = CONFIGS["meanscale-gdn"]
    assert config.default_quality == 5 and json.loads(config.to_json())["default_quality"] == 4
    assert ModelConfig.from_json(config.to_json()) == config
    carried = HOME.shipped_config("meanscale-gdn")  # the checkpoint's own JSON, read back
    assert (carried.lambdas, carried.default_quality) == (config.lambdas, 5)
    with pytest.raises(ModelError, match="default_quality 7 is not a position on its λ ladder"):
        ModelConfig.from_dict(dict(json.loads(config.to_json()), default_quality=7))


def test_stored_and_from_stored_convert_fractional_qualities():
    config = CONFIGS["hyperprior-gdn"]
    assert config.stored(4.25) == 3.25 and config.from_stored(3.25) == 4.25
    assert config.stored(7) == 6 and isinstance(config.stored(7), int)
    with pytest.raises(ModelError, match="out of range"):
        config.from_stored(6.01)
    with pytest.raises(ModelError, match="out of range"):
        config.stored(1.5)


def test_per_quality_manifest_lookup_uses_the_common_numbering():
    assert HOME.shipped_qualities("factorized-gdn") == [2, 3, 4, 5, 6, 7]
    assert HOME.shipped_qualities("factorized-bn") == [3, 5, 7]  # the ablation's λ 0.0035, 0.013, 0.0483
    for q in HOME.shipped_qualities("factorized-gdn"):
        entry = HOME.manifest_entry("factorized-gdn", q)
        assert (entry["quality"], entry["file"]) == (q - 1, f"factorized-gdn-q{q - 1}.safetensors")
        assert entry["lambda"] == pytest.approx(LAMBDA_SCALE[q - 1])
    loaded = HOME.load_shipped("factorized-gdn", 2)
    assert (loaded.quality, loaded.meta["quality"]) == (2, 1)
    assert HOME.manifest_entry("factorized-bn", 4) is None
    with pytest.raises(ModelError, match="no trained weights for model 'factorized-bn' quality 4 "
                                         r"\(shipped qualities: 3, 5, 7\)"):
        HOME.load_shipped("factorized-bn", 4)
    with pytest.raises(ModelError, match=r"quality 1 is out of range for model 'factorized-gdn' \(valid: 2..7\)"):
        HOME.load_shipped("factorized-gdn", 1)


GOLDEN_FILES = sorted(json.loads((GOLDEN / "golden.json").read_text()).items())


@pytest.mark.parametrize("key,golden", GOLDEN_FILES, ids=[k for k, _ in GOLDEN_FILES])
def test_a_golden_file_stores_the_ladder_position_and_info_shows_the_common_quality(key, golden, capsys):
    """The golden files were written before qualities had one scale: their headers hold the position
    on the model's ladder, which ``info`` and the Pillow plugin show on the common scale (that they
    decode to their pixels and encode to their bytes: tests/test_golden.py)."""
    path = GOLDEN / f"{key}.bin"
    config = CONFIGS[golden["model"]]
    header = bitstream.unpack(path.read_bytes()).header
    assert header.quality == golden["quality"] - config.offset
    code, out, _ = run_main(capsys, "info", path)
    assert code == 0 and f"\n  quality   {golden['quality']}\n" in out
    with Image.open(path) as im:
        assert im.info["quality"] == golden["quality"]


def test_info_of_a_file_whose_model_is_not_installed(capsys, tmp_path):
    h = bitstream.Header("someone-else", bytes(8), 3, 4, 4, "RGB")
    path = tmp_path / "x.bin"
    path.write_bytes(bitstream.pack(h, [b"p"]))
    code, out, _ = run_main(capsys, "info", path)
    assert code == 0 and "  quality   position 3 on the λ ladder of someone-else (not a quality of a model installed here)" in out


def test_models_says_which_ladder_is_off_the_scale(capsys, monkeypatch, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "checkpoints").mkdir()
    toml = (ROOT / "models" / "factorized-gdn.toml").read_text()
    (tmp_path / "models" / "on.toml").write_text(toml)
    (tmp_path / "models" / "off.toml").write_text(
        toml.replace("lambdas = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483]", "lambdas = [0.002, 0.01, 0.05, 0.2]"))
    monkeypatch.setenv("IMGCODEC_HOME", str(tmp_path))
    code, out, _ = run_main(capsys, "models")
    assert code == 0
    off, on = out[out.index("off:"):out.index("on:")], out[out.index("on:"):]
    assert "not on the quality scale: its qualities number its levels from 1" in off and "  q1  lambda=0.002" in off
    assert "not on the quality scale" not in on and "  q2  lambda=0.0018" in on and "  q7  lambda=0.0483" in on
    assert "default quality 4)" in off and "default quality 5)" in on


@pytest.mark.parametrize("model,quality", [("factorized-gdn", 3), ("hyperprior-gdn", 6.5), ("meanscale-gdn", 2)])
def test_encode_stores_the_ladder_position_and_decode_reads_it_back(model, quality):
    config = CONFIGS[model]
    rgb = natural_image(40, 56, seed=11)
    data = imgcodec.encode(rgb, model=model, quality=quality, runtime="torch")
    header = bitstream.unpack(data).header
    assert header.quality == quality - 1 == config.stored(quality)
    loaded = HOME.load_shipped(model, quality)
    assert header.weights == bytes.fromhex(loaded.sha256)[:8]
    decoded = np.asarray(imgcodec.decode(data, runtime="torch"))
    # the decoder took the file's λ: what the encoder's model reconstructs at that quality
    from imgcodec.codec import api

    parts = bitstream.unpack(data).parts[: loaded.model.latent_parts]
    expected = api.decompress_latents(loaded.model, parts, 40, 56, "cpu", quality)
    assert np.array_equal(decoded, np.asarray(api.to_pil(expected, None, gray=False)))
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["quality"] == quality


def test_the_light_runtime_reads_and_writes_the_same_positions():
    pytest.importorskip("onnxruntime")
    rgb = natural_image(32, 48, seed=12)
    for model, quality in (("factorized-gdn", 6), ("hyperprior-gdn", 3.5)):
        data = imgcodec.encode(rgb, model=model, quality=quality, runtime="onnx")
        assert bitstream.unpack(data).header.quality == quality - 1
        assert data == imgcodec.encode(rgb, model=model, quality=quality, runtime="torch")
        assert np.array_equal(np.asarray(imgcodec.decode(data, runtime="onnx")),
                              np.asarray(imgcodec.decode(data, runtime="torch")))


def test_the_result_files_number_qualities_on_the_common_scale():
    """Each shipped model's Kodak result file: every quality's weights have the scale's λ, and the
    report reuses the file (its qualities are the store's)."""
    for path in sorted((ROOT / "results" / "kodak").glob("*.json")):
        res = json.loads(path.read_text())
        if res["kind"] != "learned":
            continue
        model = res["settings"]["model"]
        assert res["results"]["quality"] == HOME.shipped_qualities(model), path.name
        for q, weights in res["settings"]["weights"].items():
            assert math.isclose(weights["lambda"], LAMBDA_SCALE[int(q) - 1], rel_tol=1e-9), (path.name, q)
        assert {im["quality"] for im in res["images"]} == set(res["results"]["quality"]), path.name
        refine = res["settings"].get("refine_steps", 0)
        assert report._reusable_model(path, res["dataset"], HOME, model, refine) is not None, path.name


def test_the_trainer_draws_qualities_on_the_scale(tmp_path):
    from imgcodec.train.options import TrainOptions

    opts = TrainOptions(model="meanscale-gdn", data=(tmp_path,), out=tmp_path / "run", steps=1).resolve()
    drawn = {opts.step_target(step, 0) for step in range(200)}
    assert {q for q, _ in drawn} == set(CONFIGS["meanscale-gdn"].qualities)
    assert all(lmbda == pytest.approx(LAMBDA_SCALE[q - 1]) for q, lmbda in drawn)
    one = TrainOptions(model="factorized-gdn", data=(tmp_path,), out=tmp_path / "run", steps=1, quality=2).resolve()
    assert one.lmbda == pytest.approx(0.0018)
