"""The export of the float transforms to ONNX (``imgcodec/light/export.py``): the sub-pixel form
(``subpixel``) computes what the torch modules do — each stride-2 transposed convolution as a
phase convolution and a depth-to-space, to float rounding, at every size (odd ones included), in
torch and in ONNX Runtime."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the export needs imgcodec[train]")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from imgcodec.light.export import SubPixelConvTranspose, export_graph, subpixel_padding  # noqa: E402
from imgcodec.models.norms import centralized_deconv5x5, deconv5x5  # noqa: E402

SIZES = ((1, 1), (1, 2), (3, 5), (7, 4), (8, 12))
# (in, out) of g_s's transposed convolutions: M → N, N → N, N → 3 (N = 64 or 96, M = 96 or 192)
CHANNELS = ((96, 64), (64, 64), (64, 3), (192, 96), (96, 3))


def _random(deconv: nn.ConvTranspose2d, seed: int) -> nn.ConvTranspose2d:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        deconv.weight.copy_(torch.randn(deconv.weight.shape, generator=g) * 0.1)
        deconv.bias.copy_(torch.randn(deconv.bias.shape, generator=g))
    return deconv.eval().requires_grad_(False)


def _close(a: torch.Tensor, b: torch.Tensor, cin: int) -> None:
    """Equal to float rounding: the difference of two orders of the same ``25·cin`` products."""
    assert a.shape == b.shape
    tol = 1e-6 * (25 * cin) ** 0.5 * float(a.abs().max() + 1)
    assert float((a - b).abs().max()) <= tol, (float((a - b).abs().max()), tol)


@pytest.mark.parametrize("make", [deconv5x5, centralized_deconv5x5])
@pytest.mark.parametrize("cin,cout", CHANNELS)
def test_the_phase_convolution_is_the_transposed_convolution(make, cin, cout):
    deconv = _random(make(cin, cout), cin * 1000 + cout)
    sub = SubPixelConvTranspose(deconv)
    g = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.randn(1, cin, h, w, generator=g) * 3
        with torch.no_grad():
            _close(sub(x), deconv(x), cin)


@pytest.mark.parametrize("kernel,stride,padding,output_padding", [(5, 2, 2, 1), (4, 2, 1, 0), (3, 2, 1, 1)])
def test_other_transposed_convolutions(kernel, stride, padding, output_padding):
    """A kernel of 4 also has the form; one whose phases need asymmetric padding keeps its
    transposed convolution (``subpixel_padding`` says None)."""
    deconv = _random(nn.ConvTranspose2d(8, 5, kernel, stride, padding, output_padding), kernel)
    if subpixel_padding(deconv) is None:
        assert (kernel, padding) == (3, 1)
        with pytest.raises(ValueError):
            SubPixelConvTranspose(deconv)
        return
    sub = SubPixelConvTranspose(deconv)
    for h, w in SIZES:
        x = torch.randn(1, 8, h, w)
        with torch.no_grad():
            _close(sub(x), deconv(x), 8)
    assert subpixel_padding(nn.ConvTranspose2d(8, 5, 5, 1, 2)) is None  # stride 1: an ordinary convolution
    assert subpixel_padding(nn.ConvTranspose2d(8, 8, 5, 2, 2, 1, groups=2)) is None


def _graph_ops(data: bytes) -> set[str]:
    onnx = pytest.importorskip("onnx")
    return {n.op_type for n in onnx.load_from_string(data).graph.node}


def test_the_exported_synthesis_runs_the_transposed_convolutions_in_onnx_runtime():
    """g_s of random weights (IGDN between the layers) exported with ``subpixel`` and run in ONNX
    Runtime at odd and even sizes: no ConvTranspose in the graph, the torch module's output to float
    rounding.  Without ``subpixel`` the graph keeps its ConvTranspose."""
    from imgcodec.models.compressai_parts import GDN

    torch.manual_seed(0)
    layers = [_random(deconv5x5(96, 64), 1), GDN(64, inverse=True), _random(centralized_deconv5x5(64, 64), 2),
              nn.ReLU(), _random(deconv5x5(64, 3), 3)]
    g_s = nn.Sequential(*layers).eval()
    assert "ConvTranspose" in _graph_ops(export_graph(g_s, 96, 4))
    data = export_graph(g_s, 96, 4, subpixel=True)
    assert "ConvTranspose" not in _graph_ops(data) and "DepthToSpace" in _graph_ops(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = torch.round(torch.randn(1, 96, h, w) * 3)
        with torch.no_grad():
            ref = g_s(x).numpy()
        out = sess.run(None, {"x": x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))



def test_float16_weights_are_stored_in_float16_and_compute_the_same():
    """A transform whose weights are float16 values (a checkpoint of ``store.half_weights``) exports
    with those initializers in float16, each widened by a Cast: the graph is about half the bytes
    and ONNX Runtime computes exactly what the float32 graph computes. Weights that are not float16
    values (and small initializers) stay float32: such a graph is unchanged."""
    import io

    import onnx
    from onnx import numpy_helper

    from imgcodec.light.export import HALF_MIN_VALUES, half_initializers

    module = nn.Sequential(_random(deconv5x5(96, 64), 1), nn.ReLU(), _random(deconv5x5(64, 3), 2))
    x = torch.rand(1, 96, 5, 7)

    def plain(m) -> bytes:
        buf = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(m, (x,), buf, input_names=["x"], output_names=["y"], opset_version=17,
                              dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
        return buf.getvalue()

    assert half_initializers(plain(module)) == plain(module)  # float32 weights: nothing to halve
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    full = plain(module)
    half = half_initializers(full)
    kinds = {i.name: numpy_helper.to_array(i).dtype for i in onnx.load_from_string(half).graph.initializer}
    assert sorted(kinds.values(), key=str) == [np.float16, np.float16, np.float32, np.float32]  # two weights, two biases
    assert all(n.endswith("_f16") for n, k in kinds.items() if k == np.float16) and 96 * 64 * 25 >= HALF_MIN_VALUES
    assert len(half) < 0.6 * len(full)
    big = np.random.default_rng(0).random((1, 96, 9, 13), dtype=np.float32)
    a, b = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(None, {"x": big})[0] for g in (full, half))
    assert np.array_equal(a, b)
