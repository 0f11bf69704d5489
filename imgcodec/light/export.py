"""Export the float transforms of shipped models as ONNX graphs (needs torch: ``imgcodec[train]``).

For every manifest entry (or those of the models named), the torch model is loaded from its verified
checkpoint and its float transforms are written to ``checkpoints/onnx/<checkpoint>.<name>.onnx``:
``g_a``, ``g_s``, ``h_a`` (``hyper_analysis``: ``|y|`` or ``[|y|, y]`` inside the graph) and, for
the mean-scale model, ``h_m`` (its float means).  The exact parts (``h_s``; the checkerboard's
``h_m``, context and entropy parameters) are not exported: the light runtime computes them in numpy
from the checkpoint itself.  The manifest entry then gets an ``onnx`` record — the checkpoint's
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


def _exportable(module: nn.Module) -> nn.Module:
    """``module`` with each ``nn.GroupNorm`` as ``GroupNorm64`` (the same function)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.GroupNorm:
            setattr(module, name, GroupNorm64(child))
        else:
            _exportable(child)
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


def export_graph(module: nn.Module, channels: int, side: int) -> bytes:
    """The ONNX graph of ``module`` on (1, channels, H, W) float32, H and W dynamic."""
    module = _exportable(copy.deepcopy(module).eval())
    x = torch.rand(1, channels, side, side + 2)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {2: "height", 3: "width"}, "y": {2: "out_height", 3: "out_width"}},
                          do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def export_entry(store: Store, entry: dict) -> dict:
    """Write the graphs of one manifest entry; the ``onnx`` record to add to it."""
    loaded = load_checkpoint_file(Path(store.checkpoints) / entry["file"], expected_sha256=entry["sha256"])
    model = loaded.model.eval().requires_grad_(False)
    folder = Path(store.checkpoints) / ONNX_DIR
    folder.mkdir(exist_ok=True)
    graphs = {}
    for name, (module, channels, side) in graphs_of(model).items():
        data = export_graph(module, channels, side)
        file = graph_file(entry["file"], name)
        write_bytes_atomic(folder / file, data, force=True)
        graphs[name] = {"file": file, "sha256": hashlib.sha256(data).hexdigest()}
    return {"checkpoint_sha256": entry["sha256"], "opset": OPSET, "footprint": model.footprint, "graphs": graphs}


def export(store: Store, models: list[str] | None = None, log=print) -> list[str]:
    """Export the graphs of every entry (of ``models`` where given) and record them in the manifest."""
    path = Path(store.checkpoints) / MANIFEST_NAME
    records = {}
    for entry in store.read_manifest():
        if models and entry["model"] not in models:
            continue
        records[(entry["file"], entry["sha256"])] = export_entry(store, entry)
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
