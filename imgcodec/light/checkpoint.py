"""A shipped checkpoint as numpy arrays, and its ONNX graphs, both verified against the manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..models import store as _store
from ..models.config import ModelConfig

ONNX_DIR = "onnx"  # the graphs' folder inside the checkpoints folder
GRAPHS = ("g_a", "g_s", "h_a", "h_m")  # the float transforms a model may carry


@dataclass
class LightWeights:
    """One checkpoint's tensors (numpy), config, sha256 and the paths of its verified ONNX graphs."""

    tensors: dict
    config: ModelConfig
    sha256: str
    graphs: dict = field(default_factory=dict)  # name -> Path
    footprint: int | None = None


def graph_file(checkpoint_file: str, name: str) -> str:
    """The file name of graph ``name`` of a checkpoint file (inside ``checkpoints/onnx``)."""
    return f"{Path(checkpoint_file).stem}.{name}.onnx"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_weights(path: Path, expected_sha256: str) -> tuple[dict, ModelConfig]:
    """The tensors (numpy) and config of a checkpoint, hashed before they are parsed (as
    ``store.read_checkpoint`` does, without torch)."""
    from safetensors import SafetensorError  # deferred: with numpy, only loading weights needs it
    from safetensors.numpy import load

    path = Path(path)
    with _store._open_checkpoint(path) as f:
        data = f.read(_store.MAX_CHECKPOINT_BYTES + 1)
    if len(data) > _store.MAX_CHECKPOINT_BYTES or sha256_bytes(data) != expected_sha256:
        raise ModelError(f"checkpoint {path.name} does not match its manifest sha256 (tampered or stale)")
    try:
        header = _store._safetensors_header(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name} is not a safetensors checkpoint ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != _store.CHECKPOINT_FORMAT:
        raise ModelError(f"{path.name} is not an imgcodec checkpoint")
    config, _ = _store._checked_metadata(meta, path.name)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"{path.name} is not a safetensors checkpoint ({exc})") from None
    for key, a in tensors.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ModelError(f"checkpoint {path.name}: {key} holds NaN or infinite values")
        if key.endswith("_quantized_cdf"):
            prefix = key[: -len("_quantized_cdf")]
            _store.check_entropy_tables(a, tensors.get(prefix + "_cdf_length"), tensors.get(prefix + "_offset"),
                                        f"checkpoint {path.name}: the entropy tables {prefix.rstrip('.')}")
    return tensors, config


def load_light(store, model: str | None, quality) -> tuple[LightWeights, int | float]:
    """The weights of (model, quality) for the light runtime, and the normalized quality: the same
    resolution as ``Store.load_shipped`` (one checkpoint for every quality of a continuous-rate
    model), plus the ONNX graphs its manifest entry records.  A ``ModelError`` where the entry has no
    graphs, or graphs exported from other weights."""
    entry, quality = store.shipped_entry(model, quality)
    return _load_entry(Path(store.checkpoints), entry["file"], entry["sha256"], _onnx_record(entry)), quality


def _onnx_record(entry: dict) -> tuple:
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


_CACHE: dict = {}


def _load_entry(checkpoints: Path, file: str, sha256: str, record: tuple) -> LightWeights:
    key = (str(checkpoints), file, sha256, record)
    if key not in _CACHE:
        tensors, config = read_weights(checkpoints / file, sha256)
        graphs = {}
        for name, gfile, gsha in record[0]:
            path = checkpoints / ONNX_DIR / gfile
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ModelError(f"cannot read ONNX graph {path}: {exc.strerror or exc}") from None
            if sha256_bytes(data) != gsha:
                raise ModelError(f"ONNX graph {gfile} does not match its manifest sha256 (tampered or stale)")
            graphs[name] = path
        if len(_CACHE) >= 16:
            _CACHE.clear()
        _CACHE[key] = LightWeights(tensors, config, sha256, graphs, record[1])
    return _CACHE[key]
