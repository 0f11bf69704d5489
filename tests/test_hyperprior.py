"""The scale-hyperprior model: exact round trips, gain units and continuous quality, the
exactness of the scale indexes, the checked decoder of its ŷ payload, and damaged or hostile files.

Tiny models (N=16, M=24) trained for a few dozen steps in a private model store
(``hyperprior_home.py``); nothing here needs the shipped hyperprior weights.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import imgcodec
from imgcodec.codec import tiling
from imgcodec.codec.api import compress_latents, decompress_latents
from imgcodec.errors import BitstreamError, ModelError
from imgcodec.format import bitstream, rans
from imgcodec.models import compressai_parts, store
from imgcodec.models.config import ModelConfig
from imgcodec.models.gain import GainUnits
from imgcodec.models.hyperprior import HS_ACT_BITS, HS_WEIGHT_BITS, hyper_shape
from imgcodec.models.norms import NORMS
from imgcodec.models.registry import build_model
from imgcodec.studies import fuzz

from conftest import natural_image, run_main
from hyperprior_home import hp_home, hp_store, one_thread  # noqa: F401 - fixtures

MODEL = "tinyhp"


def tiny_config(norm: str = "gdn", gain_units: bool = True, **kw) -> ModelConfig:
    return ModelConfig.from_dict(dict(
        name="t", architecture="hyperprior", norm=norm, N=32, M=16, lambdas=[0.002, 0.01, 0.05],
        default_quality=2, gain_units=gain_units, **kw,
    ))


def encoder_latent(model, rgb: np.ndarray, quality) -> torch.Tensor:
    """ŷ as the encoder quantized it (round(y·gain)), scaled back by the inverse gain."""
    with torch.inference_mode():
        y = tiling.analysis(model, rgb)
        point = model.rate_point(quality)
        gain, inverse = point.gain, point.inverse
        y_hat = torch.round(y if gain is None else y * gain)
        return y_hat if inverse is None else y_hat * inverse


def expected_reconstruction(model, rgb: np.ndarray, quality) -> np.ndarray:
    """What the decoder must output: the synthesis of the encoder's own ŷ."""
    with torch.inference_mode():
        return tiling.synthesis(model, encoder_latent(model, rgb, quality), *rgb.shape[:2])


# ---------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("gain_units,quality", [(True, 2.37), (False, None)])
def test_every_norm_decodes_to_what_the_encoder_reconstructed(norm, gain_units, quality):
    torch.manual_seed(0)
    model = build_model(tiny_config(norm, gain_units))
    with torch.no_grad():  # a few training-mode passes: running statistics move off their init
        for seed in range(3):
            model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)), model.rate_point(1))
    model.eval()
    model.update(force=True)
    rgb = natural_image(40, 72, seed=1)  # not a multiple of 16 (nor of the hyper-latent's 64)
    parts = compress_latents(model, rgb, quality=quality)
    assert len(parts) == 2
    with torch.inference_mode():  # ŷ is bit-exact; the pixels are its synthesis
        decoded = model.decompress_latents(parts, (3, 5), model.rate_point(quality))
        assert torch.equal(decoded, encoder_latent(model, rgb, quality))
    decoded = decompress_latents(model, parts, 40, 72, quality=quality)
    np.testing.assert_array_equal(decoded, expected_reconstruction(model, rgb, quality))


def test_training_pass_and_likelihoods():
    model = build_model(tiny_config())
    x = torch.rand(2, 3, 48, 80)  # latent 3×5: the hyper-latent 1×2, h_s's output cropped
    out = model(x, model.rate_point(3))
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 16, 3, 5)
    assert out["likelihoods"]["z"].shape == (2, 32, *hyper_shape((3, 5)))
    out["x_hat"].mean().backward()
    assert model.gain.log_step.grad is not None


def test_gain_units_interpolate_exponentially_and_grow_with_the_level():
    gains = GainUnits([0.002, 0.01, 0.05], 5)
    with torch.no_grad():  # as after training: arbitrary values
        for p in gains.parameters():
            p.normal_()
    levels = torch.exp(gains.log_gains())
    assert bool((levels[1:] >= levels[:-1]).all())  # every channel, by construction
    g1, i1 = gains(0)
    g2, i2 = gains(1)
    g, i = gains(0, 0.25)
    torch.testing.assert_close(g, g1 ** 0.75 * g2 ** 0.25)
    torch.testing.assert_close(i, i1 ** 0.75 * i2 ** 0.25)
    # At initialisation: quantization step ∝ 1/sqrt(λ), inverse gain = 1/gain.
    fresh = GainUnits([0.002, 0.01, 0.05], 5)
    g1, i1 = fresh(0)
    g3, _ = fresh(2)
    torch.testing.assert_close(g3 / g1, torch.full_like(g1, 5.0))
    torch.testing.assert_close(g1 * i1, torch.ones_like(g1))


def test_config_quality_scale():
    cfg = tiny_config()
    assert cfg.level(2.37) == (1, 0.37) and cfg.level(3) == (2, 0)
    assert cfg.lmbda(1.5) == pytest.approx((0.002 * 0.01) ** 0.5)
    assert cfg.normalize_quality(2.0) == 2 and type(cfg.normalize_quality(2.0)) is int
    for bad, why in [(3.01, "out of range"), (0.99, "out of range"), (2.345, "two decimals"), ("2", "number")]:
        with pytest.raises(ModelError, match=why):
            cfg.normalize_quality(bad)
    with pytest.raises(ModelError, match="integer"):
        tiny_config(gain_units=False).normalize_quality(1.5)
    factorized = dataclasses.replace(cfg, architecture="factorized")
    with pytest.raises(ModelError, match="gain_units needs architecture checkerboard, hyperprior, meanscale"):
        build_model(factorized)
    assert "gain_units" not in dataclasses.replace(cfg, gain_units=False).to_json()  # old configs unchanged


# ---------------------------------------------------------------------------------------------
# Scale indexes: exact integer arithmetic, the same on every machine


def _conv_int(x, w, b):
    """3×3, stride 1, padding 1, in int64: (C, h, w) → (O, h, w)."""
    h, wd = x.shape[1:]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], h, wd), np.int64) + b[:, None, None]
    for ky, kx in itertools.product(range(3), range(3)):
        out += np.einsum("oi,ihw->ohw", w[:, :, ky, kx], xp[:, ky:ky + h, kx:kx + wd])
    return out


def _deconv_int(x, w, b):
    """5×5 transposed, stride 2, padding 2, output padding 1, in int64: (C, h, w) → (O, 2h, 2w)."""
    h, wd = x.shape[1:]
    full = np.zeros((w.shape[1], 2 * h + 3, 2 * wd + 3), np.int64)
    for ky, kx in itertools.product(range(5), range(5)):
        full[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += np.einsum("co,chw->ohw", w[:, :, ky, kx], x)
    return full[:, 2:2 + 2 * h, 2:2 + 2 * wd] + b[:, None, None]


def reference_indexes(model, z_hat: torch.Tensor, shape) -> np.ndarray:
    """The fixed-point hyper-synthesis in numpy int64 (exact by construction)."""
    x = np.round(z_hat[0].double().numpy() * 2**HS_ACT_BITS).astype(np.int64)
    for layer in model.h_s:
        if isinstance(layer, torch.nn.ReLU):
            x = np.maximum(x, 0)
            continue
        w = np.round(layer.weight.detach().double().numpy() * 2**HS_WEIGHT_BITS).astype(np.int64)
        b = np.round(layer.bias.detach().double().numpy() * 2 ** (HS_ACT_BITS + HS_WEIGHT_BITS)).astype(np.int64)
        acc = _deconv_int(x, w, b) if isinstance(layer, torch.nn.ConvTranspose2d) else _conv_int(x, w, b)
        q, r = np.divmod(acc, 2**HS_WEIGHT_BITS)  # acc / 2**HS_WEIGHT_BITS, rounded half to even
        half = 2 ** (HS_WEIGHT_BITS - 1)
        x = q + ((r > half) | ((r == half) & (q % 2 == 1)))
    x = x[:, : shape[0], : shape[1]]
    table = np.round(model.gaussian_conditional.scale_table.double().numpy() * 2**HS_ACT_BITS).astype(np.int64)
    return np.searchsorted(table[:-1], x, side="left")[None]


@pytest.fixture(scope="module")
def wide_scale_model():
    """A model whose h_s spans the whole scale table (random weights, scaled up), and a ẑ."""
    torch.manual_seed(5)
    model = build_model(tiny_config()).eval()
    with torch.no_grad():
        for layer in model.h_s:
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                layer.weight.mul_(3.0)
                layer.bias.uniform_(-0.5, 2.0)
    model.update(force=True)
    shape = (9, 13)
    z = torch.randint(-12, 13, (1, 32, *hyper_shape(shape)), generator=torch.Generator().manual_seed(1)).float()
    z_hat = z + model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    return model, z_hat, shape


def test_scale_indexes_are_the_exact_integer_result(wide_scale_model):
    model, z_hat, shape = wide_scale_model
    idx = model.scale_indexes(z_hat, shape)
    assert idx.shape == (1, 16, *shape) and idx.dtype == torch.int64
    np.testing.assert_array_equal(idx.numpy(), reference_indexes(model, z_hat, shape))
    assert len(np.unique(idx)) > 30  # the test spans the table


def test_scale_indexes_do_not_depend_on_the_order_of_additions(wide_scale_model):
    """Other thread counts and a permutation of the input channels (another summation order) give
    the same indexes, bit for bit: every partial sum is an exact integer."""
    model, z_hat, shape = wide_scale_model
    idx = model.scale_indexes(z_hat, shape)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert torch.equal(model.scale_indexes(z_hat, shape), idx)
    finally:
        torch.set_num_threads(threads)
    permuted = build_model(model.config).eval()
    permuted.load_state_dict(model.state_dict())
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        permuted.h_s[0].weight.copy_(model.h_s[0].weight[perm])
    assert torch.equal(permuted.scale_indexes(z_hat[:, perm], shape), idx)


def test_scale_indexes_agree_with_the_float_model(wide_scale_model):
    """The fixed point is a faithful stand-in for training's float32 h_s: an index moves only for a
    scale next to a table boundary, and then by one."""
    model, z_hat, shape = wide_scale_model
    idx = model.scale_indexes(z_hat, shape)
    with torch.no_grad():
        scales = model.h_s(z_hat)[..., : shape[0], : shape[1]]
    float_idx = model.gaussian_conditional.build_indexes(scales).long()
    assert (float_idx == idx).float().mean() > 0.99
    assert int((float_idx - idx).abs().max()) <= 1


def test_scale_indexes_survive_huge_hyper_latents(wide_scale_model):
    """A crafted ẑ (escaped values up to 2**30) cannot push a sum past 2**53: activations are clamped."""
    model, z_hat, shape = wide_scale_model
    huge = z_hat.clone()
    huge[0, :, 0, 0] = 2.0**30
    huge[0, :, 1, 1] = -(2.0**30)
    idx = model.scale_indexes(huge, shape)
    assert int(idx.min()) >= 0 and int(idx.max()) < len(model.gaussian_conditional.scale_table)


# ---------------------------------------------------------------------------------------------
# The checked decoder of ŷ (one table per symbol)


@pytest.fixture(scope="module")
def conditional():
    model = build_model(tiny_config()).eval()
    model.update(force=True)
    return model.gaussian_conditional


@settings(max_examples=40, deadline=None)
@given(n=st.integers(8, 200), scale=st.sampled_from([0.05, 1.0, 10.0, 300.0, 1e5]), seed=st.integers(0, 2**16))
def test_indexed_decoder_matches_compressai_bit_for_bit(conditional, n, scale, seed):
    """On every stream compressai's encoder writes, escapes (values beyond a table) included.

    (At least 8 symbols: compressai's encoder sizes its output buffer by the symbol count and
    writes past it for one or two symbols; a model's latent always has at least M or N.)"""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(1, 1, 1, n, generator=g) * scale
    indexes = torch.randint(0, len(conditional.scale_table), y.shape, generator=g).int()
    payload = conditional.compress(y, indexes)[0]
    expected = conditional.decompress([payload], indexes)
    got = rans.decode_indexed(payload, compressai_parts.coder_tables(conditional), indexes.numpy())
    assert torch.equal(torch.from_numpy(got).reshape(y.shape).float(), expected)


def test_indexed_decoder_refuses_damaged_streams(conditional):
    g = torch.Generator().manual_seed(3)
    y = torch.randn(1, 4, 3, 3, generator=g) * 5
    indexes = torch.randint(0, 64, y.shape, generator=g).int()
    payload = conditional.compress(y, indexes)[0]
    tables = compressai_parts.coder_tables(conditional)
    idx = indexes.numpy().reshape(-1)
    rans.decode_indexed(payload, tables, idx)
    for bad, why in [
        (b"", "not a whole rANS stream"),
        (payload[:-2], "not a whole rANS stream"),
        (payload[:8], "ends too early|does not end"),
        (payload + b"\0" * 4, "does not end where it should"),
    ]:
        with pytest.raises(BitstreamError, match=why):
            rans.decode_indexed(bad, tables, idx)
    with pytest.raises(BitstreamError):
        rans.decode_indexed(payload, tables, np.concatenate([idx, idx[:1]]))  # more symbols than coded
    with pytest.raises(ValueError, match="out of range"):
        rans.decode_indexed(payload, tables, idx + 64)
    # An escape whose length group claims 9..15 nibbles (the encoder writes at most 8): refused.
    cdf, max_value, _ = tables[0]
    start, freq = cdf[max_value], cdf[max_value + 1] - cdf[max_value]
    k = next(k for k in range(1 << 40, (1 << 40) + 4096) if (freq * k) & 15 >= 9)
    crafted = struct.pack("<Q", (k << 16) | start) + b"\xff" * 64
    with pytest.raises(BitstreamError, match="escaped value longer"):
        rans.decode_indexed(crafted, tables, np.zeros(1, np.int64))


# ---------------------------------------------------------------------------------------------
# Files (the shipped tiny models of the private home)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(natural_image(40, 56, seed=4))


def test_shipped_as_one_checkpoint_for_every_quality(hp_store):
    entries = [e for e in hp_store.read_manifest() if e["model"] == MODEL]
    assert [(e["quality"], e["file"]) for e in entries] == [(store.EVERY_QUALITY, f"{MODEL}.safetensors")]
    assert entries[0]["lambdas"] == [0.01, 0.05, 0.25] and entries[0]["lambda"] is None
    assert hp_store.shipped_qualities(MODEL) == [1, 2, 3]
    a, b = hp_store.load_shipped(MODEL, 1.5), hp_store.load_shipped(MODEL, 3)
    assert a.model is not b.model and (a.quality, b.quality) == (1.5, 3)  # each caller owns its module
    assert all(torch.equal(t, b.model.state_dict()[k]) for k, t in a.model.state_dict().items())  # one checkpoint
    held = hp_store.cached()  # a caller that loads the same weights again holds them
    c, d = held.load_shipped(MODEL, 1.5), held.load_shipped(MODEL, 3)
    assert c.model is d.model and (c.quality, d.quality) == (1.5, 3)
    assert hp_store.load_shipped(MODEL, store.EVERY_QUALITY).quality == 2  # its manifest key: the default
    assert hp_store.shipped_qualities("tinyhp-fixed") == [1, 2]


@pytest.mark.parametrize("quality", [2.37, 2, 1, 3])
def test_file_round_trip_is_exact(hp_store, photo, quality):
    data = imgcodec.encode(photo, model=MODEL, quality=quality, store=hp_store)
    s = bitstream.unpack(data)
    assert data[4] == 2  # two latent parts: version 2, whatever the quality
    assert s.header.quality == quality and s.header.latent_parts == 2 and len(s.parts) == 2
    out = imgcodec.decode(data, store=hp_store)
    model = hp_store.load_shipped(MODEL, quality).model
    np.testing.assert_array_equal(np.asarray(out), expected_reconstruction(model, np.asarray(photo), quality))


def test_rgba_and_gray_round_trip(hp_store, photo):
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(natural_image(40, 56, seed=5)[..., 0]))
    data = imgcodec.encode(rgba, model=MODEL, quality=1.5, store=hp_store)
    s = bitstream.unpack(data)
    assert len(s.parts) == 3 and s.header.mode == "RGBA"
    out = imgcodec.decode(data, store=hp_store)
    assert out.mode == "RGBA" and out.getchannel("A").tobytes() == rgba.getchannel("A").tobytes()
    gray = imgcodec.encode(photo.convert("L"), model=MODEL, quality=2.5, store=hp_store)
    assert imgcodec.decode(gray, store=hp_store).mode == "L"


def test_models_with_one_checkpoint_per_quality(hp_store, photo):
    data = imgcodec.encode(photo, model="tinyhp-fixed", quality=2, store=hp_store)
    s = bitstream.unpack(data)
    assert data[4] == 2 and s.header.quality == 2
    assert imgcodec.decode(data, store=hp_store).size == photo.size
    with pytest.raises(ModelError, match="integer"):
        imgcodec.encode(photo, model="tinyhp-fixed", quality=1.5, store=hp_store)


def test_bpp_increases_with_quality(hp_store):
    """The continuous quality scale: every step of a quarter makes a larger file, and no step of a
    twentieth a smaller one."""
    img = Image.fromarray(natural_image(96, 128, seed=3))
    qualities = [1 + k / 4 for k in range(9)]
    sizes = [len(imgcodec.encode(img, model=MODEL, quality=q, store=hp_store)) for q in qualities]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), dict(zip(qualities, sizes))
    fine = [len(imgcodec.encode(img, model=MODEL, quality=1 + k / 20, store=hp_store)) for k in range(41)]
    assert fine == sorted(fine) and fine[-1] > 3 * fine[0], fine


def test_fractional_quality_on_the_command_line(hp_home, hp_store, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMGCODEC_HOME", str(hp_home))  # the command line's store (run here in-process)
    src, binf, png = tmp_path / "in.png", tmp_path / "o.bin", tmp_path / "o.png"
    photo.save(src)
    assert run_main(capsys, "encode", src, binf, "--model", MODEL, "-q", "2.45")[0] == 0
    code, out, _ = run_main(capsys, "info", binf)
    assert code == 0 and "quality   2.45" in out and MODEL in out
    assert run_main(capsys, "decode", binf, png)[0] == 0
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(imgcodec.decode(binf.read_bytes(), store=hp_store)))
    code, out, _ = run_main(capsys, "models")
    assert "continuous quality 1..3" in out
    block = out.split(f"{MODEL}:", 1)[1].split("\n")[1:]
    block = block[: next(i for i, line in enumerate(block + [""]) if not line.startswith("  "))]
    assert "  its λ ladder is not on the quality scale: its qualities number its levels from 1" in block
    listing = [line for line in block if line.startswith("  q")]  # its three levels, one checkpoint
    assert [line.split()[0] for line in listing] == ["q1", "q2", "q3"] and all(line.endswith("shipped") for line in listing)
    for q, msg in [("2.456", "two decimals"), ("3.5", "out of range")]:
        code, _, err = run_main(capsys, "encode", src, binf, "--model", MODEL, "-q", q, "-f")
        assert code == 1 and msg in err and len(err.strip().splitlines()) == 1
    # a model with one checkpoint per quality
    code, _, err = run_main(capsys, "encode", src, tmp_path / "f.bin", "--model", "factorized-gdn", "-q", "2.5")
    assert code == 1 and "integer" in err


# ---------------------------------------------------------------------------------------------
# Damaged and hostile files


@pytest.fixture(scope="module")
def small_file(hp_store) -> bytes:
    return imgcodec.encode(Image.fromarray(natural_image(32, 32, seed=6)), model=MODEL, quality=2.5, store=hp_store)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_every_single_bit_flip_and_truncation_is_reported(small_file, hp_store):
    imgcodec.decode(small_file, store=hp_store)
    reasons = set()
    for bit in range(8 * len(small_file)):
        with pytest.raises(BitstreamError) as info:
            imgcodec.decode(_flip(small_file, bit), store=hp_store)
        reasons.add(str(info.value).split(" (")[0])
    assert {r for r in reasons if not r.startswith("unsupported format version")} <= {
        "corrupt file: CRC32 mismatch", "not an imgcodec file", "truncated file"}, reasons
    for n in range(len(small_file)):
        with pytest.raises(BitstreamError):
            imgcodec.decode(small_file[:n], store=hp_store)


def test_damaged_payloads_with_a_recomputed_crc_are_refused(small_file, hp_store):
    """Past the CRC, the checked decoders of ẑ and ŷ refuse every flipped bit of either part."""
    parts = fuzz.Layout.of(small_file).parts
    assert len(parts) == 2
    for pos, n in parts:
        for bit in range(8 * pos, 8 * (pos + n)):
            with pytest.raises(BitstreamError, match="corrupt payload"):
                imgcodec.decode(fuzz.reseal(_flip(small_file, bit)), store=hp_store)


def test_latent_part_count_must_match_the_model(hp_store, small_file, photo):
    s = bitstream.unpack(small_file)
    one = bitstream.pack(dataclasses.replace(s.header, latent_parts=1), [s.parts[1]])
    with pytest.raises(BitstreamError, match="1 latent parts, but model 'tinyhp' writes 2"):
        imgcodec.decode(one, store=hp_store)
    f = bitstream.unpack(imgcodec.encode(photo, model="factorized-gdn", store=hp_store))  # one part, version 1
    two = bitstream.pack(dataclasses.replace(f.header, latent_parts=2), [f.parts[0], f.parts[0]])
    with pytest.raises(BitstreamError, match="2 latent parts, but model 'factorized-gdn' writes 1"):
        imgcodec.decode(two, store=hp_store)
    c = bitstream.unpack(imgcodec.encode(photo, model="checkerboard-gdn", store=hp_store))  # [ẑ, ŷ anchors, ŷ others]
    assert c.header.latent_parts == 3
    for k in (2, 4):
        forged = bitstream.pack(dataclasses.replace(c.header, latent_parts=k), [*c.parts, c.parts[-1]][:k])
        with pytest.raises(BitstreamError, match=f"{k} latent parts, but model 'checkerboard-gdn' writes 3"):
            imgcodec.decode(forged, store=hp_store)


def _foreign(hp_store, img: Image.Image, quality) -> bytes:
    """Latents coded with another, randomly initialised model's tables, under the shipped header."""
    from imgcodec.codec import api as codec
    from imgcodec.codec.imageio import canonicalize

    torch.manual_seed(99)
    other = build_model(hp_store.load_config(MODEL)).eval()
    other.update(force=True)
    canon = canonicalize(img)
    with torch.no_grad():  # big enough latents that the payload is not all zeros
        other.g_a[-1].weight.mul_(20)
    parts = compress_latents(other, canon.rgb, quality=quality)
    header = bitstream.unpack(codec.encode_canonical(canon, hp_store.load_shipped(MODEL, quality))).header
    return bitstream.pack(header, parts)


def test_foreign_latents_are_refused(hp_store, photo):
    for q in (1, 2.5):
        with pytest.raises(BitstreamError, match="corrupt payload"):
            imgcodec.decode(_foreign(hp_store, photo, q), store=hp_store)


def test_fuzz_campaign_on_hyperprior_files(hp_home, hp_store, small_file, photo):
    """Crafted files with correct CRCs, and a seeded campaign of mutations of hyperprior files, in
    the fuzz harness's worker (a crash or a hang there is a finding, not a dead test run)."""
    s = bitstream.unpack(small_file)
    z, y = s.parts

    def forge(parts, **hdr):
        return bitstream.pack(dataclasses.replace(s.header, **hdr), parts)

    hostile = [
        forge([b"", y]), forge([z, b""]), forge([y, z]), forge([z, z]), forge([y, y]),
        forge([z, y + b"\0" * 4]), forge([z[:8], y]), forge([b"\xff" * 64, b"\xff" * 4096]),
        forge([b"\0" * 8, b"\0" * 8]),
        forge([z, y], width=11585, height=11585),  # just under the pixel cap: a huge latent to decode
        forge([b"\0" * 8, b"\0" * 8], width=6000, height=4000),
        forge([z, y], quality=3), forge([z, y], quality=1.01),
    ]
    foreign = [_foreign(hp_store, photo, 2.5)]
    seeds = [small_file, imgcodec.encode(photo, model=MODEL, quality=1, store=hp_store)]
    mutated = [fuzz.generate(77, i, seeds, foreign)[1] for i in range(250)]
    report = fuzz.campaign(0, inputs=hostile + foreign + mutated, wall_limit=120, home=hp_home)
    assert report.findings == [], report.findings
    assert report.inputs == len(hostile) + 1 + 250
    assert set(report.outcomes) <= {"BitstreamError", "decoded", "ModelError"}
    assert report.outcomes["BitstreamError"] > 100 and report.outcomes["decoded"] > 0
    assert report.max_cpu < 10


def test_evaluation_of_a_continuous_model(hp_store, tmp_path):
    """`imgcodec eval`: the shipped model at its levels (or any quality), and a run's checkpoint."""
    from imgcodec.eval import evaluate

    data = tmp_path / "eval"
    data.mkdir()
    Image.fromarray(natural_image(40, 48, seed=12)).save(data / "a.png")
    res = evaluate.evaluate_model(data, model=MODEL, progress=False, store=hp_store)
    assert res.results["quality"] == [1, 2, 3]
    bpp = res.results["bpp"]
    assert bpp == sorted(bpp) and len(set(bpp)) == 3
    ckpt = hp_store.checkpoints / f"{MODEL}.safetensors"
    res = evaluate.evaluate_model(data, checkpoint=ckpt, qualities=evaluate.parse_qualities(["2.5,1"]), progress=False,
                                  store=hp_store)
    assert res.results["quality"] == [1, 2.5]
    assert res.results["bpp"][0] == bpp[0]
    # Each quality is labelled with its λ (ladder 0.01, 0.05, 0.25: 2.5 lies halfway from 0.05 to 0.25, exponentially).
    lambdas = {q: w["lambda"] for q, w in res.settings["weights"].items()}
    assert lambdas["1"] == 0.01 and lambdas["2.5"] == pytest.approx((0.05 * 0.25) ** 0.5)


def test_trainer_draws_a_level_per_step_and_resumes_exactly(hp_home, tmp_path, monkeypatch):
    from imgcodec.errors import CodecError
    from imgcodec.train import loop as trainer

    seen = []
    real = trainer.build_model

    def recording(config):
        model = real(config)
        forward = model.forward
        model.forward = lambda x, point=None, **kw: seen.append(point.quality) or forward(x, point, **kw)
        return model

    monkeypatch.setattr(trainer, "build_model", recording)
    common = dict(model=MODEL, home=hp_home, data=hp_home.parent / "imgs", workers=0, progress=False, threads=1,
                  steps=16, precision="fp32")
    straight = trainer.train(trainer.TrainOptions(out=tmp_path / "a", **common))
    assert straight["lambda"] is None and set(seen) == {1, 2, 3}
    run = tmp_path / "b"
    trainer.train(trainer.TrainOptions(out=run, stop_after=7, checkpoint_seconds=0.0, **common))
    resumed = trainer.train(trainer.TrainOptions(out=run, resume=True, **common))
    assert resumed["weights"] == straight["weights"]
    seen.clear()
    one = trainer.train(trainer.TrainOptions(out=tmp_path / "c", quality=3, **common))
    assert set(seen) == {3} and one["lambda"] == 0.25
    with pytest.raises(CodecError, match="not --lambda"):
        trainer.train(trainer.TrainOptions(out=tmp_path / "d", lmbda=0.1, **common))
