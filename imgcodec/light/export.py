"""Export the float transforms of shipped models as ONNX graphs (needs torch: ``imgcodec[train]``).

For every manifest entry (or those of the models named), the torch model is loaded from its verified
checkpoint and its float transforms are written to ``checkpoints/onnx/<checkpoint>.<name>.onnx``:
``g_a``, ``g_s``, ``h_a`` (``hyper_analysis``: ``|y|`` or ``[|y|, y]`` inside the graph) and, for
the mean-scale model, ``h_m`` (its float means).  Each graph computes what the torch module does,
GroupNorm with its statistics in float64 (``GroupNorm64``); with ``subpixel`` each stride-2
transposed convolution is written as one convolution with 4 phase kernels and a depth-to-space
(``SubPixelConvTranspose``: the same function, no ``ConvTranspose`` in the graph; not the shipped
form, which it does not run faster at one thread, docs/performance.md).  The exact parts (``h_s``; the checkerboard's
``h_m``, context and entropy parameters) are not exported: the light runtime computes them in numpy
from the checkpoint itself.  Weights that are float16 values (a checkpoint written with
``store.half_weights``) are stored in float16 and widened by a ``Cast`` (``half_initializers``):
the same function in half the bytes.  The manifest entry then gets an ``onnx`` record — the checkpoint's
sha256 the graphs come from, each graph's file and sha256, the opset and the transforms' footprint
— added to the entry as it is on disk just before writing, nothing else changed.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import write_bytes_atomic
from ..models.store import MANIFEST_NAME, Store, load_checkpoint_file
from .checkpoint import ONNX_DIR, graph_file

OPSET = 17


class _HyperAnalysis(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.hyper_analysis(x)


class GroupNorm64(nn.Module):
    """``nn.GroupNorm`` with its statistics in float64, as torch's CPU kernel accumulates them
    (ONNX Runtime's own normalization sums in float32, and the frame-wide sums drift)."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = gn.num_groups, gn.eps
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x):
        n, c, h, w = x.shape
        xd = x.double().reshape(n, self.groups, -1)
        mean = xd.mean(-1, keepdim=True)
        rstd = torch.rsqrt(((xd - mean) ** 2).mean(-1, keepdim=True) + self.eps)
        scale = (rstd.float().reshape(n, self.groups, 1) * self.weight.reshape(1, self.groups, -1))
        shift = self.bias.reshape(1, self.groups, -1) - mean.float() * scale
        return (x.reshape(n, self.groups, -1, h * w) * scale[..., None] + shift[..., None]).reshape(n, c, h, w)


def _effective_weight(deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """The (in, out, kH, kW) kernel ``deconv`` convolves with (a centralized one's, centred)."""
    from ..models.norms import CentralizedConvTranspose2d

    w = deconv.weight
    if isinstance(deconv, CentralizedConvTranspose2d):
        w = w - w.mean(dim=(0, 2, 3), keepdim=True)
    return w


def subpixel_padding(deconv: nn.ConvTranspose2d) -> int | None:
    """The padding of the equivalent phase convolution of ``deconv``, or ``None`` where it has no
    such form here (not square, not stride × the input, grouped, dilated, or asymmetric padding).

    Output row ``o = s·m + r`` of a transposed convolution (stride s, kernel k, padding p) sums
    ``x[m - d] · w[s·d + r + p]`` over the ``d`` with ``0 ≤ s·d + r + p < k``: an ordinary
    correlation over input rows ``m - d_max … m - d_min`` for each phase ``r``.
    """
    (k, kw), (s, sw), (p, pw), (op, opw) = deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding
    if (k, s, p, op) != (kw, sw, pw, opw) or deconv.groups != 1 or deconv.dilation != (1, 1) or s < 2:
        return None
    if (deconv.padding_mode != "zeros" or k + op - 2 * p != s or k - 1 < p):
        return None  # output ≠ s × input, or a tap beyond the padding
    d_max = (k - 1 - p) // s
    d_min = -((p + s - 1) // s)  # the smallest d with s·d + (s - 1) + p ≥ 0
    return d_max if d_max == -d_min else None


class SubPixelConvTranspose(nn.Module):
    """A stride-s ``ConvTranspose2d`` whose output is s × its input, as one ``Conv2d`` with s²
    phase kernels per output channel and a pixel shuffle (ONNX ``DepthToSpace``, CRD): the same
    sums of the same products, in another order (float rounding apart)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        pad = subpixel_padding(deconv)
        if pad is None:
            raise ValueError(f"no sub-pixel form for {deconv}")
        k, s, p = deconv.kernel_size[0], deconv.stride[0], deconv.padding[0]
        w = _effective_weight(deconv).detach()
        cin, cout = w.shape[0], w.shape[1]
        size = 2 * pad + 1
        phases = w.new_zeros(cout, s, s, cin, size, size)
        for rh in range(s):
            for jh in range(size):
                kh = s * (pad - jh) + rh + p
                if not 0 <= kh < k:
                    continue
                for rw in range(s):
                    for jw in range(size):
                        kw = s * (pad - jw) + rw + p
                        if 0 <= kw < k:
                            phases[:, rh, rw, :, jh, jw] = w[:, :, kh, kw].t()
        self.stride, self.pad = s, pad
        self.weight = nn.Parameter(phases.reshape(cout * s * s, cin, size, size), requires_grad=False)
        bias = deconv.bias.detach() if deconv.bias is not None else w.new_zeros(cout)
        self.bias = nn.Parameter(bias.repeat_interleave(s * s), requires_grad=False)

    def forward(self, x):
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=self.pad), self.stride)


def _exportable(module: nn.Module, subpixel: bool = False) -> nn.Module:
    """``module`` with each ``nn.GroupNorm`` as ``GroupNorm64`` and, with ``subpixel``, each
    transposed convolution that has one as its ``SubPixelConvTranspose`` (the same functions)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.GroupNorm:
            setattr(module, name, GroupNorm64(child))
        elif subpixel and isinstance(child, nn.ConvTranspose2d) and subpixel_padding(child) is not None:
            setattr(module, name, SubPixelConvTranspose(child))
        else:
            _exportable(child, subpixel)
    return module


def graphs_of(model) -> dict:
    """``{name: (module, input channels, input side)}`` of the float transforms of ``model``."""
    arch = model.config.architecture
    M, N = model.config.M, model.config.N
    out = {"g_a": (model.g_a, 3, 64), "g_s": (model.g_s, M, 4)}
    if arch in ("hyperprior", "meanscale", "checkerboard"):
        out["h_a"] = (_HyperAnalysis(model), M, 8)
    if arch == "meanscale":
        out["h_m"] = (model.h_m, model.config.hyper_channels, 2)
    del N
    return out


def export_graph(module: nn.Module, channels: int, side: int, subpixel: bool = False) -> bytes:
    """The ONNX graph of ``module`` on (1, channels, H, W) float32, H and W dynamic (``subpixel``:
    the transposed convolutions as phase convolutions)."""
    module = _exportable(copy.deepcopy(module).eval(), subpixel)
    x = torch.rand(1, channels, side, side + 2)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {2: "height", 3: "width"}, "y": {2: "out_height", 3: "out_width"}},
                          do_constant_folding=True, dynamo=False)
    return half_initializers(buf.getvalue())


HALF_MIN_VALUES = 1024  # smaller initializers stay float32: a Cast apiece is not worth their bytes


def half_initializers(graph: bytes) -> bytes:
    """``graph`` with each float32 initializer of ``HALF_MIN_VALUES`` values or more whose every
    value is a float16 (the weights of a checkpoint stored with ``store.half_weights``) held in
    float16 and widened by a ``Cast`` to float32, which ONNX Runtime folds into the same float32
    constant when it makes the session: the same function, about half the bytes.  Other
    initializers (computed ones, GDN's effective parameters) stay as they are."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(graph)
    kept, casts = [], []
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size >= HALF_MIN_VALUES and np.array_equal(a.astype(np.float16).astype(np.float32), a):
            kept.append(numpy_helper.from_array(a.astype(np.float16), init.name + "_f16"))
            casts.append(helper.make_node("Cast", [init.name + "_f16"], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    if not casts:
        return graph
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_entry(store: Store, entry: dict, subpixel: bool = False) -> dict:
    """Write the graphs of one manifest entry; the ``onnx`` record to add to it."""
    loaded = load_checkpoint_file(Path(store.checkpoints) / entry["file"], expected_sha256=entry["sha256"])
    model = loaded.model.eval().requires_grad_(False)
    folder = Path(store.checkpoints) / ONNX_DIR
    folder.mkdir(exist_ok=True)
    graphs = {}
    for name, (module, channels, side) in graphs_of(model).items():
        data = export_graph(module, channels, side, subpixel)
        file = graph_file(entry["file"], name)
        write_bytes_atomic(folder / file, data, force=True)
        graphs[name] = {"file": file, "sha256": hashlib.sha256(data).hexdigest()}
    return {"checkpoint_sha256": entry["sha256"], "opset": OPSET, "footprint": model.footprint, "graphs": graphs}


def export(store: Store, models: list[str] | None = None, log=print, subpixel: bool = False) -> list[str]:
    """Export the graphs of every entry (of ``models`` where given) and record them in the manifest."""
    path = Path(store.checkpoints) / MANIFEST_NAME
    records = {}
    for entry in store.read_manifest():
        if models and entry["model"] not in models:
            continue
        records[(entry["file"], entry["sha256"])] = export_entry(store, entry, subpixel)
        log(f"{entry['file']}: {', '.join(records[(entry['file'], entry['sha256'])]['graphs'])}")
    # Re-read the manifest just before writing: only the onnx records of the exported entries change.
    data = json.loads(path.read_text(encoding="utf-8"))
    done = []
    for entry in data["checkpoints"]:
        record = records.get((entry.get("file"), entry.get("sha256")))
        if record is not None:
            entry["onnx"] = record
            done.append(entry["file"])
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode(), force=True)
    return done
