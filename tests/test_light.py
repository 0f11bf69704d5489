"""The light runtime (``imgcodec/light``): the exact parts in numpy equal the torch path's, the ONNX
graphs are the manifest's, and files cross between the runtimes — every shipped model's golden file
and an image per model decode in both to identical latents and pixels within ±1 in at most 0.1 %
of the values (docs/bitstream.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from imgcodec.errors import CodecError, ModelError
from imgcodec.format import bitstream, rans
from imgcodec.light import checkpoint, dispatch, fixed
from imgcodec.light import codec as light
from imgcodec.light import models as lmodels
from imgcodec.light.store import LightStore
from imgcodec.models import store

from conftest import ROOT

torch = pytest.importorskip("torch", reason="the comparison with the torch runtime needs imgcodec[train]")

from imgcodec.codec import api  # noqa: E402
from imgcodec.models import compressai_parts, hyperprior  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
MAX_DIFFERING = 0.001  # the documented bound: ±1 in at most 0.1 % of the values


def _points():
    index = json.loads((GOLDEN / "golden.json").read_text())
    return [(key, v["model"], v["quality"]) for key, v in sorted(index.items())]


POINTS = _points()


def _shape(h: bitstream.Header) -> tuple[int, int]:
    return -(-h.height // 16), -(-h.width // 16)


def rate_point(model, quality):
    """What the torch model's methods take for ``quality``: its ``RatePoint`` where the contract has
    one, else the quality itself."""
    return model.rate_point(quality) if hasattr(model, "rate_point") else quality


def torch_exact_latents(model, parts, shape) -> np.ndarray:
    """What the payload fixes exactly, by the torch model: symbols (+ medians) or ŷ in fixed point."""
    arch = model.config.architecture
    if arch == "factorized":
        return model.decompress_latents(parts, shape, rate_point(model, None)).numpy()
    z_hat = compressai_parts.decode_factorized(model.entropy_bottleneck, parts[0], hyperprior.hyper_shape(shape))
    if arch in ("hyperprior", "meanscale"):
        indexes = model.scale_indexes(z_hat, shape).numpy()
        symbols = rans.decode_indexed(parts[1], compressai_parts.coder_tables(model.gaussian_conditional), indexes)
        return symbols.reshape(1, model.config.M, *shape).astype(np.float32)
    from imgcodec.models.checkerboard import ONE, anchor_mask

    scales0, means0 = model.fixed_hyper_parameters(z_hat, shape)
    a = anchor_mask(shape)
    y = torch.zeros_like(means0)
    y[..., a] = model._decode(parts[1], scales0[..., a]) * ONE + means0[..., a]
    scales1, means1 = model.fixed_context_parameters(scales0, means0, y)
    y[..., ~a] = model._decode(parts[2], scales1[..., ~a]) * ONE + means1[..., ~a]
    return y.numpy()


def assert_pixels_within_bound(a: np.ndarray, b: np.ndarray) -> None:
    d = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    assert d.max() <= 1 and (d > 0).mean() <= MAX_DIFFERING, (int(d.max()), float((d > 0).mean()))


@pytest.fixture(scope="module")
def lights() -> LightStore:
    """The light models of this module's tests, loaded once (a cached loader the module holds)."""
    return LightStore(store.default_store()).cached()


def assert_cross(data: bytes, lights: LightStore) -> None:
    """A file decodes in both runtimes: identical exact latents, close float latents, pixels in the bound."""
    stream = bitstream.unpack(data)
    h = stream.header
    shape = _shape(h)
    q = store.default_store().load_config(h.model).from_stored(h.quality)  # the header: the ladder's position
    tm = store.default_store().load_shipped(h.model, q).model
    lm, _ = lights.load(h.model, q)
    parts = stream.parts[: tm.latent_parts]
    with torch.inference_mode():
        exact_t = torch_exact_latents(tm, parts, shape)
        float_t = tm.decompress_latents(parts, shape, rate_point(tm, q)).numpy()
    assert np.array_equal(lm.exact_latents(parts, shape, q), exact_t)
    np.testing.assert_allclose(lm.decompress_latents(parts, shape, q), float_t, rtol=1e-5, atol=5e-5)
    assert_pixels_within_bound(np.asarray(api.decode(data)), np.asarray(light.decode(data, store=lights)))


def test_the_fixed_point_constants_agree():
    assert (fixed.HS_ACT_BITS, fixed.HS_WEIGHT_BITS) == (hyperprior.HS_ACT_BITS, hyperprior.HS_WEIGHT_BITS)


def test_numpy_fixed_point_equals_the_torch_fixed_point():
    """h_s, h_m, the context and the entropy parameters of `checkerboard-gdn` on random inputs of
    several sizes, odd ones included: the same integers."""
    m = store.default_store().load_shipped("checkerboard-gdn").model
    t = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    H, M = m.config.hyper_channels, m.config.M
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (3, 5), (8, 12)):
        z = fixed.to_fixed(np.round(rng.standard_normal((H, h, w)) * 3))
        for name, kinds in (("h_s", lmodels.LightHyperprior.HS), ("h_m", lmodels.LightCheckerboard.HM)):
            ref = hyperprior.fixed_point(getattr(m, name), torch.from_numpy(z)[None]).numpy()[0]
            assert np.array_equal(fixed.fixed_point(fixed.layers(t, name, kinds), z), ref)
        anchors = fixed.to_fixed(np.round(rng.standard_normal((M, 4 * h, 4 * w)) * 5))
        cp = [("conv", t["context_prediction.weight"], t["context_prediction.bias"])]
        ref = hyperprior.fixed_point([m.context_prediction], torch.from_numpy(anchors)[None]).numpy()[0]
        assert np.array_equal(fixed.fixed_point(cp, anchors), ref)
        params = fixed.to_fixed(rng.standard_normal((4 * M, 4 * h, 4 * w)) * 4)
        ref = hyperprior.fixed_point(m.entropy_parameters, torch.from_numpy(params)[None]).numpy()[0]
        ep = fixed.layers(t, "entropy_parameters", lmodels.LightCheckerboard.EP)
        assert np.array_equal(fixed.fixed_point(ep, params), ref)


def test_the_context_at_the_non_anchors_equals_the_whole_context():
    """``fixed_point_at`` (the non-anchors only, the taps that read anchors only) and ``pointwise``
    give the same integers as ``fixed_point`` on the whole plane, odd sizes included."""
    t = load_file(store.default_store().checkpoints / "checkerboard-gdn.safetensors")
    cp = fixed.prepared([("conv", t["context_prediction.weight"], t["context_prediction.bias"])])
    ep = fixed.layers(t, "entropy_parameters", lmodels.LightCheckerboard.EP)
    M = t["context_prediction.weight"].shape[1]
    rng = np.random.default_rng(1)
    for h, w in ((1, 1), (1, 2), (3, 5), (8, 12)):
        a = lmodels.anchor_mask((h, w))
        anchors = np.where(a, fixed.to_fixed(np.round(rng.standard_normal((M, h, w)) * 5)), 0.0)
        assert np.array_equal(fixed.fixed_point_at(cp, anchors, ~a, a), fixed.fixed_point(cp, anchors)[:, ~a])
        params = fixed.to_fixed(rng.standard_normal((4 * M, h, w)) * 4)
        assert np.array_equal(fixed.pointwise(ep, params[:, ~a]), fixed.fixed_point(ep, params)[:, ~a])


@pytest.fixture
def numpy2_promotion():
    """numpy 2's type promotion (NEP 50: a Python float does not widen a float16 array), which the
    light install gets; numpy 1.x, which torch's install holds, offers it as an opt-in."""
    opt_in = getattr(np, "_set_promotion_state", None)
    if opt_in is None:  # numpy 2: the only behaviour
        yield
        return
    before = np._get_promotion_state()
    opt_in("weak")
    try:
        yield
    finally:
        opt_in(before)


def test_half_weights_give_the_same_exact_latents_in_both_runtimes(tmp_path, numpy2_promotion):
    """A checkpoint whose convolutions are stored in float16 (``store.write_half_checkpoint``): the
    numpy fixed point widens them as torch does, so a file of its torch model decodes in the light
    runtime to the same exact latents (the transforms' graphs are not needed for them: never read).
    Under numpy 2's promotion, as the light install runs it: a product in float16 overflows."""
    from conftest import natural_image

    dst = tmp_path / "half.safetensors"
    store.write_half_checkpoint(store.default_store().checkpoints / "checkerboard-gdn.safetensors", dst)
    tm = store.load_checkpoint_file(dst).model
    tensors, config = checkpoint.read_weights(dst, None)
    assert tensors["context_prediction.weight"].dtype == np.float16
    graphs = {g: checkpoint.Graph(tmp_path / f"{g}.onnx", "0" * 64) for g in lmodels.LightCheckerboard.graphs_needed}
    lm = lmodels.build(checkpoint.LightWeights(tensors, config, "half", graphs))
    with torch.inference_mode():
        parts = api.compress_latents(tm, natural_image(48, 80, seed=2), "cpu", rate_point(tm, 5))
        exact_t = torch_exact_latents(tm, parts, (3, 5))
    assert np.array_equal(lm.exact_latents(parts, (3, 5), 5), exact_t)


def test_the_exported_graphs_match_the_manifest():
    """Every shipped checkpoint has its graphs, exported from its weights, with the recorded sha256."""
    s = store.default_store()
    for entry in s.read_manifest():
        record = entry.get("onnx")
        assert record and record["checkpoint_sha256"] == entry["sha256"], \
            f"{entry['file']}: run scripts/export_onnx.py"
        config = s.load_config(entry["model"])
        needed = {"g_a", "g_s"} | ({"h_a"} if config.architecture != "factorized" else set()) \
            | ({"h_m"} if config.architecture == "meanscale" else set())
        assert set(record["graphs"]) == needed, entry["file"]
        for name, g in record["graphs"].items():
            assert g["file"] == checkpoint.graph_file(entry["file"], name)
            data = (Path(s.checkpoints) / checkpoint.ONNX_DIR / g["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == g["sha256"], g["file"]


def test_a_graph_of_other_weights_or_tampered_is_refused(tmp_path):
    import shutil

    src = store.default_store()
    root = tmp_path / "home"
    shutil.copytree(src.models, root / "models")
    (root / "checkpoints" / "onnx").mkdir(parents=True)
    # the manifest's fourth position of factorized-gdn: quality 5
    entry = next(e for e in src.read_manifest() if e["model"] == "factorized-gdn" and e["quality"] == 4)
    shutil.copy(Path(src.checkpoints) / entry["file"], root / "checkpoints")
    for g in entry["onnx"]["graphs"].values():
        shutil.copy(Path(src.checkpoints) / "onnx" / g["file"], root / "checkpoints" / "onnx")
    s = store.Store.at(root)
    stale = dict(entry, onnx=dict(entry["onnx"], checkpoint_sha256="0" * 64))
    s.write_manifest([stale])
    with pytest.raises(ModelError, match="no ONNX graphs"):
        LightStore(s).weights("factorized-gdn", 5)
    s.write_manifest([entry])
    LightStore(s).weights("factorized-gdn", 5)
    g = root / "checkpoints" / "onnx" / entry["onnx"]["graphs"]["g_s"]["file"]
    g.write_bytes(g.read_bytes() + b"\0")
    weights, _ = LightStore(s).weights("factorized-gdn", 5)  # the checkpoint now; each graph when it runs
    with pytest.raises(ModelError, match="does not match"):
        weights.verify_graphs()
    model, _ = LightStore(s).load("factorized-gdn", 5)
    with pytest.raises(ModelError, match="does not match"):
        model.g_s(np.zeros((1, model.config.M, 2, 2), np.float32))


@pytest.mark.parametrize("key,model,quality", POINTS, ids=[p[0] for p in POINTS])
def test_golden_files_cross_runtimes(key, model, quality, lights):
    """The golden file (written by the torch runtime) decodes in the light runtime to the same
    latents; the light runtime's file of the golden input decodes in the torch runtime."""
    assert_cross((GOLDEN / f"{key}.bin").read_bytes(), lights)
    from test_golden import golden_input

    assert_cross(light.encode(golden_input(), quality=quality, model=model, store=lights), lights)




@pytest.mark.slow
@pytest.mark.parametrize("key,model,quality", POINTS, ids=[p[0] for p in POINTS])
def test_a_photo_crosses_runtimes(key, model, quality, kodak_dir, lights):
    """A Kodak photo per model, written by each runtime, decodes in the other."""
    rgb = np.asarray(Image.open(kodak_dir / "kodim23.png").convert("RGB"))
    assert_cross(api.encode(rgb, quality=quality, model=model), lights)
    assert_cross(light.encode(rgb, quality=quality, model=model, store=lights), lights)


def test_tiles_give_the_whole_frame_latent(lights):
    m, _ = lights.load("checkerboard-gdn", 5)
    rng = np.random.default_rng(3)
    rgb = (rng.random((200, 260, 3)) * 255).astype(np.uint8)
    whole = light.analysis(m, rgb, tile=0)
    tiled = light.analysis(m, rgb, tile=4)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    y = np.round(whole).astype(np.float32)
    assert_pixels_within_bound(light.synthesis(m, y, 200, 260, tile=0), light.synthesis(m, y, 200, 260, tile=4))


def test_the_runtime_is_chosen_explicitly(monkeypatch):
    monkeypatch.delenv(dispatch.ENV, raising=False)
    assert dispatch.resolve() == "torch"  # torch is installed here
    assert dispatch.resolve("onnx") == "onnx"
    monkeypatch.setenv(dispatch.ENV, "onnx")
    assert dispatch.resolve() == "onnx"
    with pytest.raises(CodecError, match="--refine needs the torch runtime"):
        dispatch.resolve(torch_only="--refine")
    with pytest.raises(CodecError, match="unknown runtime"):
        dispatch.resolve("tensorflow")
    monkeypatch.setattr(dispatch, "torch_installed", lambda: False)
    monkeypatch.delenv(dispatch.ENV)
    assert dispatch.resolve() == "onnx"
    with pytest.raises(CodecError, match="needs torch"):
        dispatch.resolve("torch")


NO_TORCH = r"""
import io, sys
from pathlib import Path
import numpy as np
from PIL import Image
from imgcodec.cli import cli
out = Path(sys.argv[1])
def run(*args):
    try:
        cli.main(list(args), standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
run("encode", sys.argv[2], str(out / "a.bin"))
run("decode", str(out / "a.bin"), str(out / "a.png"))
run("info", "-v", str(out / "a.bin"))
run("models")
import imgcodec
im = Image.open(out / "a.bin"); im.load()
buf = io.BytesIO(); Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buf, format="IMGCODEC")
assert imgcodec.decode(buf.getvalue()).size == (30, 20)
print("torch" in sys.modules, "compressai" in sys.modules)
"""


def test_the_light_runtime_imports_no_torch(tmp_path, sample_path):
    """encode, decode, info, models and the Pillow plugin on the ONNX runtime never import torch."""
    env = {"IMGCODEC_RUNTIME": "onnx", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path), str(sample_path)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False False", r.stdout
    assert "runtime   onnx" in r.stdout


def test_the_bench_times_both_runtimes():
    from imgcodec.studies import bench

    rgb = (np.random.default_rng(5).random((48, 64, 3)) * 255).astype(np.uint8)
    lines: list[str] = []
    res = bench.runtimes_section([("noise", rgb)], [], reps=1, warmup=0, log=lines.append)
    shipped = {n for n in store.default_store().configs() if store.default_store().shipped_qualities(n)}
    assert set(res["models"]) == shipped
    assert all(v > 0 for times in res["models"].values() for v in times.values())
    assert "onnx encode s" in lines[0]


def test_the_bench_times_each_synthesis_deconvolution_in_both_runtimes():
    """Every distinct stride-2 transposed convolution of the shipped synthesis transforms, once,
    at the input the image's latent gives it; ONNX Runtime's two forms compute torch's output."""
    from torch import nn

    from imgcodec.studies import bench

    home = store.default_store()
    rgb = (np.random.default_rng(6).random((40, 72, 3)) * 255).astype(np.uint8)  # latent 3 × 5
    lines: list[str] = []
    res = bench.kernels_section([("noise", rgb)], reps=1, warmup=0, log=lines.append)
    expected = set()
    for n in home.configs():
        if home.shipped_qualities(n):
            deconvs = [m for m in home.load_shipped(n).model.g_s.modules() if isinstance(m, nn.ConvTranspose2d)]
            expected |= {(m.in_channels, m.out_channels, 3 * 2**i, 5 * 2**i) for i, m in enumerate(deconvs)}
    assert {(r["in"], r["out"], *r["input"]) for r in res["layers"]} == expected
    assert len(res["layers"]) == len(expected)
    for r in res["layers"]:
        assert set(r["seconds"]) == {"torch", "onnx ConvTranspose", "onnx phase Conv"}
        assert r["max_abs_diff"] < 1e-3 and r["gflop"] > 0
    assert "ConvTranspose ms" in lines[0] and len(lines[0].splitlines()) == 2 + len(expected)
