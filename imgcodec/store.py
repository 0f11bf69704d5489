"""The model store: configs from ``models/*.toml``, weights from ``checkpoints/``.

Weights are safetensors files (never pickle), one per (model, quality), listed in
``checkpoints/manifest.json`` with their sha256.  A checkpoint carries its resolved
``ModelConfig`` as JSON metadata and, for inference, the entropy coder's quantized CDF tables, so
the decoder uses exactly the tables the encoder used and never recomputes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import write_bytes_atomic
from .config import ModelConfig
from .errors import ModelError

CHECKPOINT_FORMAT = "imgcodec-checkpoint-1"
MANIFEST_NAME = "manifest.json"


def repo_root() -> Path:
    """Where ``models/`` and ``checkpoints/`` live: ``$IMGCODEC_HOME`` or the source checkout."""
    env = os.environ.get("IMGCODEC_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def models_dir() -> Path:
    return repo_root() / "models"


def checkpoints_dir() -> Path:
    return repo_root() / "checkpoints"


def available_configs() -> dict[str, ModelConfig]:
    return {p.stem: ModelConfig.from_toml(p) for p in sorted(models_dir().glob("*.toml"))}


def load_config(name: str) -> ModelConfig:
    path = models_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(available_configs())) or "none"
        raise ModelError(f"unknown model {name!r} (known: {known})")
    return ModelConfig.from_toml(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Manifest


def read_manifest() -> list[dict]:
    path = checkpoints_dir() / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read checkpoint manifest {path}: {exc}") from None


def write_manifest(entries: list[dict]) -> None:
    entries = sorted(entries, key=lambda e: (e["model"], e["quality"]))
    text = json.dumps({"format": 1, "checkpoints": entries}, indent=2) + "\n"
    write_bytes_atomic(checkpoints_dir() / MANIFEST_NAME, text.encode(), force=True)


def manifest_entry(model: str, quality: int) -> dict | None:
    for entry in read_manifest():
        if entry["model"] == model and entry["quality"] == quality:
            return entry
    return None


# The manifest quality of a continuous-rate model's one checkpoint, which serves every quality.
EVERY_QUALITY = 0


def shipped_qualities(model: str) -> list[int]:
    """The qualities with weights; for a continuous-rate model, the levels of its λ ladder."""
    have = sorted(e["quality"] for e in read_manifest() if e["model"] == model)
    if EVERY_QUALITY in have:
        return list(load_config(model).qualities)
    return have


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def save_checkpoint(model, path: Path, **meta: object) -> str:
    """Write an inference checkpoint atomically; returns its sha256.

    The caller has run ``model.update(force=True)`` so the CDF tables are current.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": CHECKPOINT_FORMAT, "config": model.config.to_json()}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    data = save(tensors, metadata=metadata)
    write_bytes_atomic(Path(path), data, force=True)
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(path: Path, expected_sha256: str | None = None):
    """Read and verify a checkpoint file; returns ``(tensors, config, meta, sha256)``.

    The bytes are hashed before they are parsed, and only the safetensors parser ever sees them:
    a pickle (or anything else) offered as a checkpoint is refused, never executed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(f"checkpoint {path.name} does not match its manifest sha256 (tampered or stale)")
    try:
        tensors = load(data)
        meta = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"{path.name} is not a safetensors checkpoint ({exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path.name} is not an imgcodec checkpoint")
    config = ModelConfig.from_json(meta.pop("config"))
    meta.pop("format")
    extra = {k: json.loads(v) for k, v in meta.items()}
    return tensors, config, extra, digest


def _safetensors_metadata(data: bytes) -> dict:
    if len(data) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length exceeds the file")
    header = json.loads(data[8 : 8 + n])
    return dict(header.get("__metadata__") or {})


def model_from_tensors(tensors: dict, config: ModelConfig):
    from .autoencoders import build_model

    model = build_model(config)
    try:
        model.load_state_dict(dict(tensors))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(f"weights do not fit model {config.name!r}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model


@dataclass
class LoadedModel:
    model: object  # a torch module
    config: ModelConfig
    quality: int
    sha256: str
    meta: dict


def load_checkpoint_file(path: Path, expected_sha256: str | None = None) -> LoadedModel:
    tensors, config, meta, digest = read_checkpoint(path, expected_sha256)
    model = model_from_tensors(tensors, config)
    return LoadedModel(model, config, int(meta.get("quality", 0)), digest, meta)


def load_shipped(model: str, quality) -> LoadedModel:
    """The shipped weights of (model, quality), verified against the manifest.

    A continuous-rate model has one checkpoint (manifest quality ``EVERY_QUALITY``), loaded once
    and shared: the ``LoadedModel`` of every quality holds the same module (asked for quality
    ``EVERY_QUALITY``, as its manifest entry names it, it comes labelled with the default quality).
    """
    config = load_config(model)
    if config.continuous:
        quality = config.normalize_quality(config.default_quality if quality == EVERY_QUALITY else quality)
        return replace(_load_entry(model, EVERY_QUALITY), quality=quality)
    quality = config.normalize_quality(quality)
    return _load_entry(model, quality)


@functools.lru_cache(maxsize=16)
def _load_entry(model: str, quality: int) -> LoadedModel:
    entry = manifest_entry(model, quality)
    if entry is None:
        have = shipped_qualities(model)
        raise ModelError(
            f"no trained weights for model {model!r}" + (f" quality {quality}" if quality != EVERY_QUALITY else "")
            + (f" (shipped qualities: {', '.join(map(str, have))})" if have else " (none shipped)")
        )
    return load_checkpoint_file(checkpoints_dir() / entry["file"], expected_sha256=entry["sha256"])


load_shipped.cache_clear = _load_entry.cache_clear  # forget every loaded checkpoint
