"""The numba rANS encoder (``format/rans_encode.py``) writes compressai's bytes: on random symbols
(escapes in both directions included), per-channel and per-symbol tables, and on real latents."""

from __future__ import annotations

import numpy as np
import pytest

from imgcodec.format import rans, rans_encode
from imgcodec.models import compressai_parts, store

ans = pytest.importorskip("compressai.ans", reason="byte equality needs compressai (imgcodec[train])")


@pytest.fixture(scope="module")
def checkerboard():
    return store.default_store().load_shipped("checkerboard-gdn").model


def _compressai_indexed(symbols, indexes, gc) -> bytes:
    return ans.RansEncoder().encode_with_indexes(
        np.asarray(symbols, np.int32).tolist(), np.asarray(indexes, np.int32).tolist(), gc._quantized_cdf.tolist(),
        gc._cdf_length.reshape(-1).int().tolist(), gc._offset.reshape(-1).int().tolist())


def _tables(m):
    return m._quantized_cdf.numpy(), m._cdf_length.numpy(), m._offset.numpy()


@pytest.mark.parametrize("coder", ["jit", "python"])
@pytest.mark.parametrize("spread", [0.3, 2, 40, 3000, 200000])
def test_random_symbols_with_one_table_each_give_compressai_bytes(checkerboard, spread, coder):
    gc = checkerboard.gaussian_conditional
    rng = np.random.default_rng(int(spread * 10))
    for n in (3, 17, 1000, 5001):
        indexes = rng.integers(0, gc._quantized_cdf.shape[0], n)
        symbols = np.round(rng.standard_normal(n) * spread).astype(np.int64)
        data = rans_encode.encode_indexed(symbols, indexes, *_tables(gc), coder=coder)
        assert data == _compressai_indexed(symbols, indexes, gc)
        assert (rans.decode_indexed(data, compressai_parts.coder_tables(gc), indexes) == symbols).all()


@pytest.mark.parametrize("coder", ["jit", "python"])
def test_per_channel_tables_give_the_entropy_bottleneck_bytes(checkerboard, coder):
    import torch

    eb = checkerboard.entropy_bottleneck
    rng = np.random.default_rng(1)
    medians = eb._get_medians().detach().numpy().reshape(-1, 1, 1)
    for h, w, scale in ((1, 1, 1.0), (3, 5, 4.0), (9, 13, 60.0)):
        y = (rng.standard_normal((1, eb._quantized_cdf.shape[0], h, w)) * scale).astype(np.float32)
        symbols = np.round(y[0] - medians).astype(np.int64)
        assert rans_encode.encode_channels(symbols, *_tables(eb), coder=coder) == eb.compress(torch.from_numpy(y))[0]


@pytest.mark.parametrize("coder", ["jit", "python"])
def test_real_latents_give_compressai_bytes(checkerboard, sample_path, coder):
    """The latents of the bundled sample through the default model's coder: ẑ per channel, ŷ's
    anchors with their exact scale indexes."""
    import torch

    from imgcodec.codec import tiling
    from imgcodec.codec.imageio import load_rgb_array

    m = checkerboard
    with torch.inference_mode():
        point = m.rate_point(5) if hasattr(m, "rate_point") else 5  # the contract's rate point, where it has one
        y, z = m.coded_latents(tiling.analysis(m, load_rgb_array(sample_path)), point)
        z_payload = m.entropy_bottleneck.compress(z)[0]
        medians = m.entropy_bottleneck._get_medians().detach().numpy().reshape(-1, 1, 1)
        z_symbols = np.round(z[0].numpy() - medians).astype(np.int64)
        assert rans_encode.encode_channels(z_symbols, *_tables(m.entropy_bottleneck), coder=coder) == z_payload
        z_hat = compressai_parts.decode_factorized(m.entropy_bottleneck, z_payload, tuple(z.shape[-2:]))
        a, q0, scales0, *_ = m._quantize(y, z_hat)
        indexes = m.fixed_scale_indexes(scales0[..., a])
        ref = m.gaussian_conditional.compress(q0[..., a], indexes)[0]
    assert rans_encode.encode_indexed(q0[..., a].numpy().astype(np.int64), indexes.numpy(),
                                      *_tables(m.gaussian_conditional), coder=coder) == ref


def test_refuses_out_of_range_values_and_indexes(checkerboard):
    gc = checkerboard.gaussian_conditional
    with pytest.raises(ValueError):
        rans_encode.encode_indexed([1 << 20], [0], *_tables(gc))
    with pytest.raises(ValueError):
        rans_encode.encode_indexed([0], [gc._quantized_cdf.shape[0]], *_tables(gc))
