"""The normalization ablation: the variants' configs, the study's plan, its resumable run on a tiny
budget (real training, real bitstreams), and the tables it derives."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgcodec.cli import cli
from imgcodec.codec import tensors
from imgcodec.errors import ModelError
from imgcodec.eval.results import Results
from imgcodec.models import store
from imgcodec.models.config import ModelConfig
from imgcodec.models.norms import NORMS
from imgcodec.studies import ablation
from imgcodec.studies.ablation import Run, StudyError, StudyOptions, plan, variant_config

from conftest import natural_image, run_cli

NAMES = sorted(NORMS)


# ---------------------------------------------------------------------------------------------
# Variants


@pytest.mark.parametrize("name", NAMES)
def test_variant_config_toml_reads_back_exactly(name, tmp_path):
    configs = (variant_config(name), variant_config(name, N=8, M=12))
    for config in configs + (dataclasses.replace(configs[1], hyper_N=16),):  # the optional field too
        path = tmp_path / f"{config.name}.toml"
        path.write_text(ablation.config_toml(config), encoding="utf-8")
        assert ModelConfig.from_toml(path) == config


def test_narrow_study_keeps_groupnorm_valid():
    cfg = variant_config("gn", N=8, M=8)
    assert (cfg.N, cfg.M, cfg.norm_options["groups"]) == (8, 8, 8)
    assert "8 groups at N=8" in cfg.description
    assert variant_config("gn", N=64).norm_options["groups"] == 32
    from imgcodec.models.registry import build_model

    build_model(cfg)  # builds: the groups divide the width


def test_models_command_lists_every_variant():
    r = run_cli("models")
    assert r.returncode == 0, r.stderr
    for name in NAMES:
        assert f"factorized-{name}: " in r.stdout


@pytest.fixture()
def bare_home(tmp_path):
    """A home with this checkout's model configs and no weights at all."""
    home = tmp_path / "home"
    shutil.copytree(store.default_store().models, home / "models")
    (home / "checkpoints").mkdir()
    return home


@pytest.mark.parametrize("name", NAMES)
def test_variant_without_weights_is_a_clear_error(name, bare_home):
    with pytest.raises(ModelError, match=f"no trained weights for model 'factorized-{name}' quality 4"):
        store.Store.at(bare_home).load_shipped(f"factorized-{name}", 4)


def test_encode_with_untrained_variant_fails_in_one_line(bare_home, sample_path, tmp_path):
    r = run_cli("encode", str(sample_path), str(tmp_path / "x.bin"), "--model", "factorized-rbn",
                env={"IMGCODEC_HOME": str(bare_home)})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "imgcodec: error: no trained weights for model 'factorized-rbn' quality 5 (none shipped)"
    )
    assert not (tmp_path / "x.bin").exists()


# ---------------------------------------------------------------------------------------------
# The plan


def test_default_plan_covers_both_axes_once():
    runs = plan(StudyOptions(data=Path("d"), eval=Path("e"), steps=1))
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    main = [r for r in runs if r.batch_size == 8]
    assert {r.norm for r in main} == set(NORMS) and {r.quality for r in main} == {3, 5, 7}  # λ 0.0035, 0.013, 0.0483
    small = {r.norm for r in runs if r.batch_size == 2}
    assert small == {"bn", "rbn", "mabn", "gn", "frn", "gdn"}
    assert all(NORMS[n].batch_dependent for n in ("bn", "rbn", "mabn"))
    assert not any(NORMS[n].batch_dependent for n in ("gn", "frn", "gdn"))
    assert len(runs) == len(NORMS) * 3 + 6  # batch 8 at q5 is shared with the main axis
    assert runs[0] == Run("gdn", 3, 8)


def test_plan_options():
    opts = StudyOptions(data=Path("d"), eval=Path("e"), steps=1, norms=["bn", "gdn"], qualities=(2, 7),
                        batch_sizes=(), only=("bn",))
    assert [r.key for r in plan(opts)] == ["bn-q2-b8", "bn-q7-b8"]
    with pytest.raises(StudyError, match="at least two qualities"):
        plan(dataclasses.replace(opts, qualities=(4,)))
    with pytest.raises(ModelError, match="unknown norm 'layernorm'"):
        plan(dataclasses.replace(opts, norms=["layernorm"]))
    with pytest.raises(ModelError, match=r"quality 9 is out of range for model 'factorized-bn' \(valid: 2..7\)"):
        plan(dataclasses.replace(opts, qualities=(2, 9)))
    with pytest.raises(ModelError, match=r"quality 1 is out of range for model 'factorized-bn' \(valid: 2..7\)"):
        plan(dataclasses.replace(opts, qualities=(1, 7)))
    with pytest.raises(StudyError, match="matches no run"):
        plan(dataclasses.replace(opts, only=("relu",)))


# ---------------------------------------------------------------------------------------------
# A tiny study, end to end


def _images(folder: Path, n: int, h: int, w: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(natural_image(h, w, seed=seed + i)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture()
def tiny(tmp_path):
    data = _images(tmp_path / "train", 2, 48, 64, seed=0)
    ev = _images(tmp_path / "eval", 2, 32, 48, seed=10)
    opts = StudyOptions(
        data=data, eval=ev, out=tmp_path / "out", norms=["gdn", "mabn"], qualities=(3, 7), batch_size=4,
        batch_norms=("mabn",), batch_sizes=(2, 4), batch_qualities=(7,), N=8, M=8, steps=2, patch=16,
        workers=0, progress=False,
    )
    return opts


def test_tiny_study_runs_resumes_and_refuses_to_mix(tiny, tmp_path):
    logs: list[str] = []
    summary = ablation.run_study(tiny, log=logs.append)
    out = tiny.out
    keys = ["gdn-q3-b4", "gdn-q7-b4", "mabn-q3-b4", "mabn-q7-b4", "mabn-q7-b2"]
    assert sorted(p.stem for p in (out / "points").glob("*.json")) == sorted(keys)
    for name in ("gdn-b4", "mabn-b4", "mabn-b2"):
        res = json.loads((out / f"{name}.json").read_text())
        assert res["format"] == "imgcodec-results/1" and res["kind"] == "learned"
    assert {r["norm"] for r in summary["main"]} == {"gdn", "mabn"}
    assert summary["main"][0]["norm"] == "gdn" and summary["runs_missing"] == []
    assert [r["norm"] for r in summary["batch"]] == ["mabn"]
    assert set(summary["batch"][0]["by_batch"]) == {"2", "4"}
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert "BD-rate vs gdn" in md and "| mabn | yes | 0.0483 |" in md
    # every run trained the same budget with the study's widths, from the configs it wrote
    point = json.loads((out / "points" / "mabn-q7-b2.json").read_text())
    assert point["settings"]["train"]["steps"] == 2
    assert point["settings"]["ablation"]["batch_size"] == 2
    assert point["settings"]["config"]["N"] == 8 and point["settings"]["config"]["norm"] == "mabn"
    assert point["dataset"]["images"] == 2 and all(r["bytes"] > 0 for r in point["images"])
    written = ModelConfig.from_toml(out / "runs" / "home" / "models" / "factorized-mabn.toml")
    assert (written.N, written.M, written.norm) == (8, 8, "mabn")

    # resumed: nothing is trained or evaluated again
    finals = {k: (out / "runs" / k / "final.safetensors").stat().st_mtime_ns for k in keys}
    logs.clear()
    ablation.run_study(tiny, log=logs.append)
    assert sum("done, skipped" in line for line in logs) == len(keys)
    # a lost result is only evaluated again; a lost final checkpoint is finished from the state file
    (out / "points" / "gdn-q3-b4.json").unlink()
    (out / "runs" / "gdn-q7-b4" / "final.safetensors").unlink()
    (out / "points" / "gdn-q7-b4.json").unlink()
    ablation.run_study(tiny, log=lambda _: None)
    assert (out / "points" / "gdn-q3-b4.json").exists() and (out / "points" / "gdn-q7-b4.json").exists()
    assert (out / "runs" / "gdn-q3-b4" / "final.safetensors").stat().st_mtime_ns == finals["gdn-q3-b4"]
    point = json.loads((out / "points" / "gdn-q7-b4.json").read_text())
    assert point["settings"]["train"]["steps"] == 2  # resumed at its end, not trained further

    # another budget in the same folders is refused, not mixed in
    with pytest.raises(StudyError, match="other settings"):
        ablation.run_study(dataclasses.replace(tiny, steps=3), log=lambda _: None)

    # --report-only rebuilds the tables from the points
    (out / "summary.md").unlink()
    r = CliRunner().invoke(cli, ["ablation", "--report-only", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "summary.md").exists() and "## Batch size" in r.output
    assert sorted(json.loads((out / "summary.json").read_text())["runs_planned"]) == sorted(keys)  # the plan is kept
    (out / "points" / "mabn-q7-b2.json").unlink()
    r = CliRunner().invoke(cli, ["ablation", "--report-only", "--out", str(out)])
    assert json.loads((out / "summary.json").read_text())["runs_missing"] == ["mabn-q7-b2"]


def test_ship_makes_the_variants_usable_by_encode_and_decode(tiny, bare_home, tmp_path):
    from imgcodec.codec import api as codec

    home, installed = store.Store.at(bare_home), store.default_store().read_manifest()
    with pytest.raises(StudyError, match="no study summary"):
        ablation.ship(tiny.out, into=home)
    shard = dataclasses.replace(tiny, only=("mabn-q3-b4",))
    ablation.run_study(shard, log=lambda _: None)
    with pytest.raises(StudyError, match="incomplete"):  # a shard's summary lists the runs still missing
        ablation.ship(tiny.out, into=home)
    ablation.run_study(tiny, log=lambda _: None)
    logs: list[str] = []
    shipped = ablation.ship(tiny.out, log=logs.append, into=home)
    # the main axis (batch 4 here) but the reference: gdn's shipped weights are the product's own
    # the files are named by their position on the ladder, as the manifest numbers them
    assert shipped == ["factorized-mabn-q2.safetensors", "factorized-mabn-q6.safetensors"]
    assert logs == ["shipped mabn-q3-b4 as checkpoints/factorized-mabn-q2.safetensors",
                    "shipped mabn-q7-b4 as checkpoints/factorized-mabn-q6.safetensors"]
    point = json.loads((tiny.out / "points" / "mabn-q7-b4.json").read_text())
    entry = home.manifest_entry("factorized-mabn", 7)
    assert entry["quality"] == 6  # λ 0.0483: quality 7, the sixth of the ladder
    assert entry["sha256"] == point["settings"]["weights"]["7"]["sha256"] == store.sha256_file(
        bare_home / "checkpoints" / "factorized-mabn-q6.safetensors")
    assert entry["study"] == "normalization ablation (docs/ablation.md): N=8, M=8, batch 4, 2 steps"
    assert entry["eval"] == {"bpp": round(point["results"]["bpp"][0], 4),
                             "psnr": round(point["results"]["psnr-rgb"][0], 3)}
    assert entry["lambda"] == 0.0483 and entry["steps"] == 2
    assert home.manifest_entry("factorized-gdn", 3) is None
    assert store.default_store().read_manifest() == installed  # the installation's store is untouched

    # the shipped variant encodes, and its file decodes (naming its model) to the encoder's reconstruction
    import torch

    rgb = natural_image(32, 48, seed=10)  # the first evaluation image, a multiple of 16
    data = codec.encode(Image.fromarray(rgb), model="factorized-mabn", quality=7, store=home)
    assert codec.read_info(data).header.model == "factorized-mabn"
    loaded = home.load_shipped("factorized-mabn", 7)
    assert (loaded.config.N, loaded.config.M) == (8, 8)  # the study's widths, from the checkpoint itself
    with torch.inference_mode():
        expected = tensors.tensor_to_array(loaded.model.reconstruct(tensors.array_to_tensor(rgb)))
    assert np.array_equal(np.asarray(codec.decode(data, store=home)), expected)
    r = run_cli("models", env={"IMGCODEC_HOME": str(bare_home)})
    assert "  q7  lambda=0.0483  shipped (normalization ablation (docs/ablation.md): N=8, M=8, batch 4, 2 steps)" in r.stdout
    assert "  q5  lambda=0.013   not trained" in r.stdout

    # weights that are not the evaluated ones are refused
    final = tiny.out / "runs" / "mabn-q3-b4" / "final.safetensors"
    final.write_bytes(final.read_bytes() + b" ")
    with pytest.raises(StudyError, match="is not the checkpoint that was evaluated for mabn-q3-b4"):
        ablation.ship(tiny.out, into=home)


def test_study_refuses_to_evaluate_on_training_images(tiny):
    with pytest.raises(StudyError, match="must not be part of the training images"):
        ablation.run_study(dataclasses.replace(tiny, eval=tiny.data), log=lambda _: None)
    with pytest.raises(StudyError, match="--steps or --minutes"):
        ablation.run_study(dataclasses.replace(tiny, steps=None), log=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Tables from known curves


def _point(out: Path, norm: str, quality: int, lmbda: float, batch: int, bpp: float, psnr: float) -> None:
    settings = {"norm": norm, "quality": quality, "lambda": lmbda, "batch_size": batch, "N": 8, "M": 8,
                "steps": 1, "minutes": None, "patch": 16, "lr": 1e-3, "seed": 0,
                "data": {"name": "t", "images": 2, "sha256": "x"}}
    rows = [{"image": f"{i}.png", "width": 10, "height": 10, "quality": quality, "bytes": 1, "bpp": bpp,
             "psnr-rgb": psnr, "ms-ssim-rgb": None, "ms-ssim-rgb-db": None, "encoding_time": 0.1,
             "decoding_time": 0.2} for i in range(2)]
    res = Results(name=f"{norm}-b{batch}", description="", kind="learned",
                  settings={"ablation": settings, "parameters": 100}, dataset={"name": "e", "sha256": "y"}, images=rows)
    (out / "points").mkdir(parents=True, exist_ok=True)
    res.save(out / "points" / f"{norm}-q{quality}-b{batch}.json", force=True)


def test_report_tables_from_known_curves(tmp_path):
    curve = [(2, 0.0035, 0.2, 28.0), (4, 0.013, 0.5, 31.0), (6, 0.0483, 1.0, 34.0)]
    for q, lmbda, bpp, psnr in curve:
        _point(tmp_path, "gdn", q, lmbda, 8, bpp, psnr)
        _point(tmp_path, "bn", q, lmbda, 8, 1.1 * bpp, psnr)  # 10 % more bits for the same quality
        _point(tmp_path, "frn", q, lmbda, 8, bpp, psnr + 0.5)  # 0.5 dB better at the same rate
    _point(tmp_path, "bn", 4, 0.013, 2, 0.5, 30.0)
    s = ablation.report(tmp_path, log=lambda _: None)
    rows = {r["norm"]: r for r in s["main"]}
    assert list(rows) == ["gdn", "bn", "frn"]
    assert rows["gdn"]["bd_rate_vs_gdn"] is None and rows["gdn"]["note"] == "the reference"
    assert rows["bn"]["bd_rate_vs_gdn"] == pytest.approx(10.0, abs=1e-9)
    assert rows["frn"]["bd_psnr_vs_gdn"] == pytest.approx(0.5, abs=1e-9)
    assert rows["bn"]["decoding_time"] == pytest.approx(0.2) and rows["bn"]["parameters"] == 100
    (batch_row,) = s["batch"]
    j = lambda bpp, psnr: bpp + 0.013 * 255**2 * 10 ** (-psnr / 10)  # noqa: E731
    assert batch_row["by_batch"]["2"]["rd_cost"] == pytest.approx(j(0.5, 30.0))
    assert batch_row["by_batch"]["8"]["rd_cost"] == pytest.approx(j(0.55, 31.0))
    md = (tmp_path / "summary.md").read_text()
    assert "| bn | yes | 3 | +10.0 % |" in md
    assert f"{(j(0.5, 30.0) / j(0.55, 31.0) - 1) * 100:+.1f} %" in md
