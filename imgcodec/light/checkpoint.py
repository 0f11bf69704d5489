"""A shipped checkpoint as numpy arrays, and its ONNX graphs, both verified against the manifest: the
checkpoint when it is read, each graph when its session is made, from the bytes handed to ONNX
Runtime."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError
from ..models import store as _store
from ..models.config import ModelConfig

ONNX_DIR = "onnx"  # the graphs' folder inside the checkpoints folder
GRAPHS = ("g_a", "g_s", "h_a", "h_m")  # the float transforms a model may carry


@dataclass(frozen=True)
class Graph:
    """One ONNX graph of a manifest entry: its file and the sha256 the manifest records."""

    path: Path
    sha256: str

    def read(self) -> bytes:
        """The graph's bytes, verified against the manifest's sha256: what a session is made from,
        so that the bytes checked are the bytes run."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read ONNX graph {self.path}: {exc.strerror or exc}") from None
        if sha256_bytes(data) != self.sha256:
            raise ModelError(f"ONNX graph {self.path.name} does not match its manifest sha256 (tampered or stale)")
        return data


@dataclass
class LightWeights:
    """One checkpoint's tensors (numpy), config and sha256, and its ONNX graphs (``Graph``: read and
    verified where a session needs them)."""

    tensors: dict
    config: ModelConfig
    sha256: str
    graphs: dict = field(default_factory=dict)  # name -> Graph
    footprint: int | None = None

    def verify_graphs(self) -> None:
        """Read and verify every graph now (``imgcodec info --verbose``): a ``ModelError`` if one
        cannot be read or does not match the manifest."""
        for graph in self.graphs.values():
            graph.read()


def graph_file(checkpoint_file: str, name: str) -> str:
    """The file name of graph ``name`` of a checkpoint file (inside ``checkpoints/onnx``)."""
    return f"{Path(checkpoint_file).stem}.{name}.onnx"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_weights(path: Path, expected_sha256: str) -> tuple[dict, ModelConfig]:
    """The tensors (numpy) and config of a checkpoint, verified as ``store.read_checkpoint``
    verifies the torch runtime's (hashed before they are parsed), without torch."""
    from safetensors.numpy import load  # deferred: with numpy, only loading weights needs it

    tensors, config, _, _ = _store.read_checkpoint(Path(path), expected_sha256, load=load)
    return tensors, config


def onnx_record(entry: dict) -> tuple:
    """``((name, file, sha256) of each graph, footprint)`` of a manifest entry's ONNX record: a
    ``ModelError`` where the entry has no graphs, or graphs exported from other weights."""
    onnx = entry.get("onnx")
    if not isinstance(onnx, dict) or onnx.get("checkpoint_sha256") != entry["sha256"]:
        raise ModelError(f"model {entry['model']!r} has no ONNX graphs for its shipped weights "
                         "(run scripts/export_onnx.py, or use the torch runtime: pip install 'imgcodec[train]')")
    graphs = onnx.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ModelError(f"model {entry['model']!r}: malformed ONNX record in the manifest")
    items = []
    for name, rec in sorted(graphs.items()):
        if name not in GRAPHS or not isinstance(rec, dict) or not _store.plain_file_name(rec.get("file")) \
                or not _store._is_sha256(rec.get("sha256")):
            raise ModelError(f"model {entry['model']!r}: malformed ONNX record in the manifest")
        items.append((name, rec["file"], rec["sha256"]))
    footprint = onnx.get("footprint")
    return tuple(items), footprint if isinstance(footprint, int) and not isinstance(footprint, bool) else None


def read_entry(checkpoints: Path, entry: dict, record: tuple) -> LightWeights:
    """The weights of a manifest entry, verified against its sha256 (read anew at each call, the
    caller's own), and the graphs of its ONNX ``record`` (``onnx_record``), each verified when it is
    read (``Graph.read``)."""
    checkpoints = Path(checkpoints)
    tensors, config = read_weights(checkpoints / entry["file"], entry["sha256"])
    graphs = {name: Graph(checkpoints / ONNX_DIR / gfile, gsha) for name, gfile, gsha in record[0]}
    return LightWeights(tensors, config, entry["sha256"], graphs, record[1])
