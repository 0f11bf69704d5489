"""The benchmark on a reduced set: it runs and prints (no timing assertions), and the
codec's latents and pixels agree with compressai's own FactorizedPrior holding the same weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcodec.studies import bench

from conftest import SAMPLE, run_cli


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-images")
    from PIL import Image

    img = Image.open(SAMPLE).convert("RGB")
    img.save(d / "a.png")
    img.crop((0, 0, 200, 136)).save(d / "b.png")  # not a multiple of 16: the padded path
    return d


def test_peer_identity_and_sections(reduced):
    lines = []
    res = bench.run(bench.BenchOptions(data=reduced, reps=1, warmup=0, compile=False, cli_images=0,
                                       sections=("peer", "split", "flops", "techniques", "cli")), log=lines.append)
    text = "\n".join(lines)
    for heading in ("against compressai", "where the time goes", "GFLOP/s", "techniques", "--help"):
        assert heading in text
    for q, r in res["peer"].items():
        s = r["summary"]
        assert s["images"] == 2 and s["encode_speedup"] > 0 and s["decode_speedup"] > 0
        # The stated bound (docs/performance.md): latents equal but for rare rounding ties (±1),
        # decoded 8-bit values of one payload equal but for rare ±1 (channels-last sums in another order).
        assert s["max_symbol_diff"] <= 1 and s["symbols_differing"] <= 1e-3 * s["symbols"]
        assert s["max_pixel_diff"] <= 1 and s["pixels_differing"] <= 1e-3 * s["pixels"]
    assert res["flops"]["g_a"]["gflop"] > 0 and res["flops"]["peak_gflops"] > 0
    assert res["cli"]["imgcodec --help"]["imports_torch"] is False


def test_models_section_times_each_shipped_model_against_the_default(reduced):
    lines = []
    res = bench.run(bench.BenchOptions(data=reduced, reps=1, warmup=0, compile=False, sections=("models",)),
                    log=lines.append)["models"]
    text = "\n".join(lines)
    from imgcodec.models import store

    home = store.default_store()
    shipped = {home.load_config(n).architecture for n in res}
    assert {"factorized", "hyperprior", "meanscale", "checkerboard"} <= shipped
    assert {n for n, c in home.configs().items() if home.shipped_qualities(n) and c.norm == "gdn"} == set(res)
    assert res[store.DEFAULT_MODEL]["encode_ratio"] == 1.0 and res[store.DEFAULT_MODEL]["decode_ratio"] == 1.0
    assert f"× {store.DEFAULT_MODEL}" in text
    for name, r in res.items():
        assert r["encode"] > 0 and r["decode"] > 0 and r["bytes"] > 0
        assert name in text


def test_peer_holds_our_weights():
    from imgcodec.models import store

    loaded = store.default_store().load_shipped("factorized-gdn")
    peer = bench.compressai_peer(loaded)
    ours = loaded.model.state_dict()
    for k, v in peer.state_dict().items():
        assert (v == ours[k]).all(), k


def test_help_does_not_import_torch():
    code = ("import sys\nfrom imgcodec.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    assert out[-2:] == ["False", "False"]


def test_cli_bench_scaling_and_training(reduced, tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--data", str(reduced), "--limit", "1", "--reps", "1", "--sections", "scaling,train",
                "--scaling-mp", "0.01,0.03", "--train-steps", "3", "--json", str(out), timeout=900)
    assert r.returncode == 0, r.stderr
    assert "scaling" in r.stdout
    res = json.loads(out.read_text())
    points = res["scaling"]["points"]
    assert [round(p["mp"], 2) for p in points] == [0.01, 0.03]
    assert all(p["rss_peak_bytes"] > 0 and p["encode_s"] > 0 for p in points)
    # every section measures the model (and quality) the run names
    assert all(p["model"] == res["model"] and p["quality"] == res["qualities"][0] for p in points)
    train = res["train"]
    assert train["model"] == res["model"]
    # the steps are timed on their own (no difference of two runs): positive in both precisions
    assert train["fp32"]["images_per_s"] > 0 and train["bf16"]["images_per_s"] > 0
    assert train["fp32"]["s_per_step"] == pytest.approx(train["batch_size"] / train["fp32"]["images_per_s"])
    assert train["bf16_speedup"] == train["bf16"]["images_per_s"] / train["fp32"]["images_per_s"]
    assert "bf16 / fp32:" in r.stdout and "crops/s" in r.stdout


def test_unknown_section_is_a_usage_error():
    r = run_cli("bench", "--sections", "nope")
    assert r.returncode == 2 and "unknown: nope" in r.stderr


def test_cli_section_times_refusals_next_to_compressai_import(monkeypatch, tmp_path):
    """The command-line section runs the two refusals and reports them beside `import compressai`
    (the processes are stubbed here: the real timings are the bench's job, not the suite's)."""
    from imgcodec.studies import bench

    calls = []

    def fake(cmd, env=None, check=True):
        calls.append((cmd, check))
        if "encode" in cmd and "-o" in cmd:
            out = Path(cmd[cmd.index("-o") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "a.bin").write_bytes(b"x")
        return (0.25 if "missing.png" in " ".join(cmd) else 1.5), 0.1, "NOTORCH"

    monkeypatch.setattr(bench, "_run_timed", fake)
    lines = []
    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG" + bytes(100))
    res = bench.cli_section([img], 1, 1, lines.append)
    assert res["refuse a missing input"]["s"] == 0.25
    refusals = [c for c in calls if not c[1]]
    assert len(refusals) == 4 and all(c[0][-3] == "encode" for c in refusals)
    assert any("refuse a missing input 0.25" in line and "`import compressai` alone 1.50" in line for line in lines)
