"""The model store: configs from ``models/*.toml``, weights from ``checkpoints/``.

Weights are safetensors files (never pickle), one per (model, quality), listed in
``checkpoints/manifest.json`` with their sha256.  A checkpoint carries its resolved
``ModelConfig`` as JSON metadata and, for inference, the entropy coder's quantized CDF tables, so
the decoder uses exactly the tables the encoder used and never recomputes them.

A ``Store`` is a root (``Store.at(root)``; ``default_store()``: ``$IMGCODEC_HOME`` or this
installation) and holds no state: each load builds a new module, the caller's own.  A caller that
loads the same weights again keeps them in a ``CachedStore`` it owns (``Store.cached()``).
Shipping a checkpoint (``Store.ship``) writes its file and manifest entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from ..atomic import describe, write_bytes_atomic
from ..errors import ModelError
from ..format.bitstream import valid_model_id
from .config import ModelConfig

CHECKPOINT_FORMAT = "imgcodec-checkpoint-1"
MANIFEST_NAME = "manifest.json"
DEFAULT_MODEL = "checkerboard-gdn-wide"
# Bounds a checkpoint's config must keep before anything is built from it.
MAX_CHANNELS = 1024
MAX_LEVELS = 255
# The largest checkpoint file read (the widest config, N = M = 1024, holds about 0.6 GB of weights).
MAX_CHECKPOINT_BYTES = 1 << 30
_READ_BLOCK = 1 << 20
# A manifest's ``file``: a plain name inside the checkpoints folder, never a path.
_FILE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# Entropy tables: compressai's quantized CDFs have this many bits; a latent's offset is a latent value.
CDF_PRECISION = 16
MAX_OFFSET = 1 << 20


def repo_root() -> Path:
    """The source checkout (its ``data/``, ``results/``, ``docs/``), or ``$IMGCODEC_HOME``."""
    env = os.environ.get("IMGCODEC_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


# The manifest quality of a continuous-rate model's one checkpoint, which serves every quality.
EVERY_QUALITY = 0


@dataclass(frozen=True)
class Store:
    """A model store: the configs in ``models`` (``<name>.toml``) and the weights in ``checkpoints``
    (safetensors files and ``manifest.json``).  ``Store.at(root)``: ``root/models`` and
    ``root/checkpoints``; ``default_store()``: the store of this installation."""

    models: Path
    checkpoints: Path

    @classmethod
    def at(cls, root: Path) -> "Store":
        root = Path(root)
        return cls(root / "models", root / "checkpoints")

    def configs(self) -> dict[str, ModelConfig]:
        return {p.stem: ModelConfig.from_toml(p) for p in sorted(self.models.glob("*.toml"))}

    def load_config(self, name: str) -> ModelConfig:
        """The config of a registered model.  ``name`` is a registry name (``models/<name>.toml``),
        never a path: anything with a separator, a leading dot or other characters is unknown."""
        path = self.models / f"{name}.toml"
        if not valid_model_id(name) or not path.is_file():
            known = ", ".join(sorted(self.configs())) or "none"
            raise ModelError(f"unknown model {name!r} (known: {known})")
        return ModelConfig.from_toml(path)

    def read_manifest(self) -> list[dict]:
        """The manifest's entries, each checked (``check_manifest``); none where there is no manifest."""
        path = self.checkpoints / MANIFEST_NAME
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read checkpoint manifest {path}: {exc}") from None
        return check_manifest(data, f"checkpoint manifest {path}")

    def write_manifest(self, entries: list[dict]) -> None:
        entries = sorted(entries, key=lambda e: (e["model"], e["quality"]))
        text = json.dumps({"format": 1, "checkpoints": entries}, indent=2) + "\n"
        write_bytes_atomic(self.checkpoints / MANIFEST_NAME, text.encode(), force=True)

    def file_quality(self, model: str, position) -> int | float | None:
        """The quality on the common scale of a file of ``model`` whose header holds ``position``
        (its position on the model's ladder, ``ModelConfig.from_stored``); ``None`` where this store
        has no config of that name or the position lies outside its ladder."""
        try:
            return self.load_config(model).from_stored(position)
        except ModelError:
            return None

    def manifest_entry(self, model: str, quality) -> dict | None:
        """The manifest entry of (model, quality), ``quality`` on the common scale (the entry stores
        its position on the model's ladder, ``ModelConfig.stored``), or ``EVERY_QUALITY``: a
        continuous-rate model's one checkpoint; ``None`` where none is shipped."""
        key = EVERY_QUALITY if quality == EVERY_QUALITY else self.load_config(model).stored(quality)
        return self._stored_entry(model, key)

    def _stored_entry(self, model: str, key: int) -> dict | None:
        for entry in self.read_manifest():
            if entry["model"] == model and entry["quality"] == key:
                return entry
        return None

    def shipped_qualities(self, model: str) -> list[int]:
        """The qualities with weights, on the common scale; for a continuous-rate model, the levels
        of its λ ladder."""
        have = sorted(e["quality"] for e in self.read_manifest() if e["model"] == model)
        if not have:
            return []
        config = self.load_config(model)
        if EVERY_QUALITY in have:
            return list(config.qualities)
        return [config.offset + key for key in have]

    def quality_grid(self, model: str | None = None) -> list:
        """Every quality that ``load_shipped`` serves for ``model``, ascending: a continuous-rate
        model's every hundredth from 1 to its last level, otherwise its shipped qualities."""
        model = DEFAULT_MODEL if model is None else model
        config = self.load_config(model)
        if config.continuous:
            return [config.normalize_quality(c / 100)
                    for c in range(100 * config.qualities.start, 100 * config.qualities.stop - 99)]
        return self.shipped_qualities(model)

    def shipped_entry(self, model: str | None = None, quality=None) -> tuple[dict, int | float]:
        """The manifest entry of (model, quality) and the quality normalized
        (``ModelConfig.normalize_quality``): the one place that resolves a model name and a quality.
        ``None``: the default model, the config's default quality.  A continuous-rate model's entry
        is its one checkpoint (manifest quality ``EVERY_QUALITY``, which as a quality means the
        default quality)."""
        model = DEFAULT_MODEL if model is None else model
        config = self.load_config(model)
        if quality is None:
            quality = config.default_quality
        if config.continuous:
            quality = config.normalize_quality(config.default_quality if quality == EVERY_QUALITY else quality)
            key = EVERY_QUALITY
        else:
            quality = config.normalize_quality(quality)
            key = config.stored(quality)
        entry = self._stored_entry(model, key)
        if entry is None:
            have = self.shipped_qualities(model)
            raise ModelError(
                f"no trained weights for model {model!r}" + (f" quality {quality}" if key != EVERY_QUALITY else "")
                + (f" (shipped qualities: {', '.join(map(str, have))})" if have else " (none shipped)")
            )
        return entry, quality

    def load_shipped(self, model: str | None = None, quality=None) -> "LoadedModel":
        """The shipped weights of (model, quality) (``shipped_entry``), verified against the
        manifest, labelled with the normalized quality.  Each call builds a new module, which is the
        caller's: moving it to a device or training it changes no other caller's model (a caller
        that loads the same weights often holds them: ``cached()``)."""
        entry, quality = self.shipped_entry(model, quality)
        return self.load_entry(entry).at(quality)

    def load_entry(self, entry: dict) -> "LoadedModel":
        """The checkpoint of a manifest entry, verified against its sha256."""
        return load_checkpoint_file(self.checkpoints / entry["file"], expected_sha256=entry["sha256"])

    def cached(self) -> "CachedStore":
        """This store, keeping each checkpoint it loads for the life of the returned object: for a
        caller that loads the same weights again (a rate search, an evaluation over qualities, a
        batch of files), who then owns the modules it shares between its own calls."""
        return CachedStore(self.models, self.checkpoints)

    def hold(self, key: tuple, make):
        """What ``make()`` returns: a plain store keeps nothing, so each call makes it anew (a
        ``CachedStore`` keeps it under ``key`` for its owner)."""
        return make()

    def ship(self, path: Path, model: str, quality, meta: dict, extra: dict | None = None) -> str:
        """Copy the checkpoint file ``path`` into ``checkpoints/`` as the weights of (model,
        quality) and record it in the manifest, with ``meta`` (its ``quality`` aside) and ``extra``;
        returns the file's name.  ``quality`` is on the common scale; the file's name and the entry
        hold its position on the ladder of the config the checkpoint carries.  Quality
        ``EVERY_QUALITY``: a continuous-rate model's one checkpoint."""
        with _open_checkpoint(Path(path)) as f:
            data = f.read(MAX_CHECKPOINT_BYTES + 1)
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise ModelError(f"checkpoint {Path(path).name} grew past {MAX_CHECKPOINT_BYTES} bytes while it was read")
        key = EVERY_QUALITY if quality == EVERY_QUALITY else _carried_config(data, Path(path).name).stored(quality)
        name = f"{model}.safetensors" if key == EVERY_QUALITY else f"{model}-q{key}.safetensors"
        write_bytes_atomic(self.checkpoints / name, data, force=True)
        entries = [e for e in self.read_manifest() if not (e["model"] == model and e["quality"] == key)]
        entry = {"model": model, "quality": key, "file": name, "sha256": hashlib.sha256(data).hexdigest()}
        entry.update({k: v for k, v in meta.items() if k != "quality"})
        entry.update(extra or {})
        entries.append(entry)
        self.write_manifest(entries)
        return name

    def shipped_config(self, model: str) -> ModelConfig | None:
        """The config the shipped weights of ``model`` carry (a study's may be narrower than
        ``models/<model>.toml``), read from a checkpoint's header alone; ``None`` where none is
        shipped or its header cannot be read."""
        entry = next((e for e in self.read_manifest() if e["model"] == model), None)
        if entry is None:
            return None
        try:
            with open(self.checkpoints / entry["file"], "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(min(n, _READ_BLOCK)))
            meta = header.get("__metadata__") if isinstance(header, dict) else None
            return _checked_metadata(meta, entry["file"])[0] if isinstance(meta, dict) else None
        except (OSError, ValueError, ModelError):
            return None


def installed_store() -> Store:
    """The configs and weights of this installation: those a wheel carries inside the package
    (``imgcodec/_models``, ``imgcodec/_checkpoints``), else the source checkout's ``models/`` and
    ``checkpoints/``."""
    package = Path(str(resources.files("imgcodec")))
    if (package / "_models").is_dir():
        return Store(package / "_models", package / "_checkpoints")
    return Store.at(package.parent)


def default_store() -> Store:
    """``Store.at($IMGCODEC_HOME)`` where that is set (read at each resolution), else ``installed_store()``."""
    env = os.environ.get("IMGCODEC_HOME")
    return Store.at(Path(env)) if env else installed_store()


def _is_sha256(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and set(v) <= set("0123456789abcdef")


def plain_file_name(name) -> bool:
    """A file name inside a folder, never a path: letters, digits, ``-``, ``_``, ``.``, not
    starting with ``.``, 1 … 255 characters (no ``/``, no ``..``, not absolute)."""
    return isinstance(name, str) and 1 <= len(name) <= 255 and set(name) <= _FILE_NAME_CHARS \
        and not name.startswith(".")


def check_manifest(data, what: str) -> list[dict]:
    """The entries of a manifest as JSON gives it, each checked before it is used: an object with a
    ``model`` name, a whole ``quality`` 0 … ``MAX_LEVELS``, a ``file`` that is a plain name inside
    the checkpoints folder and a ``sha256``; anything else is a one-line ``ModelError``."""
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        raise ModelError(f"{what} is malformed: not an object with a list of 'checkpoints'")
    for i, entry in enumerate(data["checkpoints"], 1):
        bad = f"{what} is malformed: entry {i}"
        if not isinstance(entry, dict):
            raise ModelError(f"{bad} is not an object")
        if not valid_model_id(entry.get("model")):
            raise ModelError(f"{bad}: 'model' is missing or not a model name")
        if not _is_int(entry.get("quality"), 0, MAX_LEVELS):
            raise ModelError(f"{bad}: 'quality' is missing or not a whole number 0 … {MAX_LEVELS}")
        if not plain_file_name(entry.get("file")):
            raise ModelError(f"{bad}: 'file' must be a file name inside the checkpoints folder, "
                             f"not {entry.get('file')!r}")
        if not _is_sha256(entry.get("sha256")):
            raise ModelError(f"{bad}: 'sha256' is missing or not 64 lowercase hex digits")
    return list(data["checkpoints"])


def _open_checkpoint(path: Path):
    """``path`` open for reading, refused unless it is a regular file of at most ``MAX_CHECKPOINT_BYTES``."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint {path}: {describe(exc)}") from None
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise ModelError(f"checkpoint {path} is not a regular file")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        f.close()
        raise ModelError(f"checkpoint {path.name} has {st.st_size} bytes, more than a checkpoint may have "
                         f"({MAX_CHECKPOINT_BYTES})")
    return f


def _streamed_sha256(f, path: Path) -> str:
    """The sha256 of the rest of ``f``, read in blocks (at most ``MAX_CHECKPOINT_BYTES``)."""
    h, n = hashlib.sha256(), 0
    for block in iter(lambda: f.read(_READ_BLOCK), b""):
        n += len(block)
        if n > MAX_CHECKPOINT_BYTES:
            raise ModelError(f"checkpoint {path.name} grew past {MAX_CHECKPOINT_BYTES} bytes while it was read")
        h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a checkpoint file, read in blocks (a regular file of at most ``MAX_CHECKPOINT_BYTES``)."""
    path = Path(path)
    with _open_checkpoint(path) as f:
        return _streamed_sha256(f, path)


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def save_checkpoint(model, path: Path, **meta: object) -> str:
    """Write an inference checkpoint atomically; returns its sha256.

    The caller has run ``model.update(force=True)`` so the CDF tables are current.
    """
    # deferred: safetensors.torch imports torch: only reading or writing weights needs it
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": CHECKPOINT_FORMAT, "config": model.config.to_json()}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    data = save(tensors, metadata=metadata)
    write_bytes_atomic(Path(path), data, force=True)
    return hashlib.sha256(data).hexdigest()


FLOAT16_MAX = 65504.0


def half_weights(tensors: dict) -> dict:
    """``tensors`` with every convolution's weights (the 4-D floating tensors named ``*.weight``) in
    float16, the rest as it is: the entropy tables, scale tables, medians, gains and GDN's parameters
    keep their precision.  Both runtimes widen them as they load (torch's ``load_state_dict``, numpy's
    float64 of the fixed-point layers), so the stored values are the weights.  A weight beyond
    float16's range is a ``ValueError``."""
    import numpy as np  # deferred: only converting weights needs it

    out = {}
    for key, t in tensors.items():
        a = _numpy(t)
        if key.endswith(".weight") and a.ndim == 4 and a.dtype.kind == "f":
            if float(np.abs(a).max(initial=0.0)) > FLOAT16_MAX:
                raise ValueError(f"{key} holds a weight beyond float16's range")
            t = t.half() if hasattr(t, "half") else a.astype(np.float16)
        out[key] = t
    return out


def write_half_checkpoint(src: Path, dst: Path) -> str:
    """Rewrite checkpoint ``src`` as ``dst`` with ``half_weights``, its metadata unchanged (read
    through ``read_checkpoint``'s checks); returns the new file's sha256."""
    from safetensors import safe_open
    from safetensors.torch import save  # deferred: as in save_checkpoint

    tensors, _, _, _ = read_checkpoint(Path(src))
    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
    data = save({k: v.contiguous() for k, v in half_weights(tensors).items()}, metadata=metadata)
    write_bytes_atomic(Path(dst), data, force=True)
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(path: Path, expected_sha256: str | None = None, load=None):
    """Read and verify a checkpoint file; returns ``(tensors, config, meta, sha256)``.

    The bytes are hashed before they are parsed, and only the safetensors parser ever sees them:
    a pickle (or anything else) offered as a checkpoint is refused, never executed.  ``load``:
    the safetensors loader of the tensors' kind, ``safetensors.torch.load`` when not given (the
    light runtime gives ``safetensors.numpy.load``: numpy arrays, no torch).
    """
    from safetensors import SafetensorError  # deferred: only reading weights needs it

    if load is None:
        from safetensors.torch import load  # deferred: safetensors.torch imports torch

    path = Path(path)
    mismatch = f"checkpoint {path.name} does not match its manifest sha256 (tampered or stale)"
    with _open_checkpoint(path) as f:
        if expected_sha256 is not None:  # a file that is not the shipped one is refused before it is held
            if _streamed_sha256(f, path) != expected_sha256:
                raise ModelError(mismatch)
            f.seek(0)
        try:
            data = f.read(MAX_CHECKPOINT_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"cannot read checkpoint {path}: {describe(exc)}") from None
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ModelError(f"checkpoint {path.name} grew past {MAX_CHECKPOINT_BYTES} bytes while it was read")
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(mismatch)
    # Everything the header says is checked before a tensor is allocated.
    try:
        header = _safetensors_header(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name} is not a safetensors checkpoint ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path.name} is not an imgcodec checkpoint")
    config, extra = _checked_metadata(meta, path.name)
    _check_weight_bytes(config, header, path.name)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"{path.name} is not a safetensors checkpoint ({exc})") from None
    check_tensors(tensors, path.name)
    return tensors, config, extra, digest


def check_tensors(tensors: dict, name: str) -> None:
    """Refuse weights the codec cannot trust (one ``ModelError`` line naming checkpoint ``name``;
    ``tensors``: torch tensors or numpy arrays):
    a NaN or infinite value in any floating tensor (a diverged run would "decode" to a black
    image), and entropy tables the coder would choke on (``check_entropy_tables``)."""
    import numpy as np  # deferred: as torch, only loading weights needs it (``imgcodec --help`` imports neither)

    arrays = {key: _numpy(t) for key, t in tensors.items()}
    for key, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ModelError(f"checkpoint {name}: {key} holds NaN or infinite values")
    for key, a in arrays.items():
        if key.endswith("_quantized_cdf"):
            prefix = key[: -len("_quantized_cdf")]
            check_entropy_tables(a, arrays.get(prefix + "_cdf_length"), arrays.get(prefix + "_offset"),
                                 f"checkpoint {name}: the entropy tables {prefix.rstrip('.')}")
        elif key.endswith("scale_table") and not (a > 0).all():
            raise ModelError(f"checkpoint {name}: {key} holds a scale that is not positive")


def _numpy(t):
    """A CPU tensor's values as numpy (no copy for the usual dtypes; numpy's reductions do not wait
    on torch's thread pool, which on a busy machine costs 0.1 s a tensor); a numpy array as it is."""
    if not hasattr(t, "numpy"):
        return t
    return (t.float() if t.dtype.is_floating_point and t.dtype.itemsize < 4 else t).numpy()


def check_entropy_tables(cdf, lengths, offsets, what: str) -> None:
    """compressai's quantized CDFs as its coder needs them, or a ``ModelError`` starting with ``what``:
    one row per table, each of ``lengths[i]`` (3 … row width) values rising strictly from 0 to
    ``2**CDF_PRECISION`` (every symbol a frequency of at least 1: a zero frequency makes the
    encoder divide by zero), and offsets within ``MAX_OFFSET``."""
    import numpy as np  # deferred: see check_tensors

    if lengths is None or offsets is None:
        raise ModelError(f"{what}: the lengths or offsets are missing")
    if cdf.ndim != 2 or any(a.dtype.kind not in "iu" for a in (cdf, lengths, offsets)):
        raise ModelError(f"{what}: not a table of whole numbers")
    cdf, lengths, offsets = cdf.astype(np.int64), lengths.reshape(-1).astype(np.int64), offsets.reshape(-1).astype(np.int64)
    rows, width = cdf.shape
    if not rows or len(lengths) != rows or len(offsets) != rows:
        raise ModelError(f"{what}: {rows} tables, {len(lengths)} lengths and {len(offsets)} offsets")
    if not ((lengths >= 3) & (lengths <= width)).all():
        raise ModelError(f"{what}: a table length outside 3 … {width}")
    if not (np.abs(offsets) <= MAX_OFFSET).all():
        raise ModelError(f"{what}: an offset beyond ±{MAX_OFFSET}")
    inside = np.arange(1, width)[None, :] < lengths[:, None]  # the steps between entries of each table
    last = cdf[np.arange(rows), lengths - 1]
    if not (cdf[:, 0] == 0).all() or not (last == 1 << CDF_PRECISION).all() \
            or not ((cdf[:, 1:] > cdf[:, :-1]) | ~inside).all():
        raise ModelError(f"{what}: a table does not rise strictly from 0 to {1 << CDF_PRECISION}")


def _safetensors_header(data: bytes) -> dict:
    """The JSON header of a safetensors file (bounded by the file's own size)."""
    if len(data) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length exceeds the file")
    header = json.loads(data[8 : 8 + n])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _carried_config(data: bytes, name: str) -> ModelConfig:
    """The config a checkpoint's bytes carry in their metadata."""
    try:
        meta = _safetensors_header(data).get("__metadata__")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{name} is not a safetensors checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{name} is not an imgcodec checkpoint")
    return _checked_metadata(meta, name)[0]


def _checked_metadata(meta: dict, name: str):
    """``(config, extra metadata)`` of a checkpoint's metadata, every field type- and range-checked."""
    bad = f"checkpoint {name} has invalid metadata"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelError(f"{bad}: values must be strings")
    try:
        d = json.loads(meta.get("config", ""))
    except ValueError:
        raise ModelError(f"{bad}: its config is not JSON") from None
    check_config_dict(d, f"{bad}: config")
    config = ModelConfig.from_dict(d)
    extra = {}
    for k, v in meta.items():
        if k in ("format", "config"):
            continue
        try:
            extra[k] = json.loads(v)
        except ValueError:
            raise ModelError(f"{bad}: {k!r} is not JSON") from None
    q = extra.get("quality", 0)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= MAX_LEVELS:
        raise ModelError(f"{bad}: quality {q!r}")
    return config, extra


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_config_dict(d, what: str) -> None:
    """Refuse a config (as JSON gives it) with a wrong type or an absurd size, before it is built:
    the widths at most ``MAX_CHANNELS``, 1 … ``MAX_LEVELS`` finite positive λ."""
    if not isinstance(d, dict):
        raise ModelError(f"{what} is not a JSON object")
    for key, kind in (("name", str), ("architecture", str), ("norm", str)):
        if not isinstance(d.get(key), kind) or not d[key]:
            raise ModelError(f"{what}: {key} missing or not a string")
    if not 1 <= len(d["name"]) <= 64:
        raise ModelError(f"{what}: name of {len(d['name'])} characters")
    for key in ("N", "M"):
        if not _is_int(d.get(key), 1, MAX_CHANNELS):
            raise ModelError(f"{what}: {key} = {d.get(key)!r} (a whole number 1 … {MAX_CHANNELS})")
    if d.get("hyper_N") is not None and not _is_int(d["hyper_N"], 1, MAX_CHANNELS):
        raise ModelError(f"{what}: hyper_N = {d['hyper_N']!r} (a whole number 1 … {MAX_CHANNELS})")
    lambdas = d.get("lambdas")
    if not isinstance(lambdas, list) or not 1 <= len(lambdas) <= MAX_LEVELS or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in lambdas):
        raise ModelError(f"{what}: lambdas must be 1 … {MAX_LEVELS} positive numbers")
    if not _is_int(d.get("default_quality"), 1, len(lambdas)):
        raise ModelError(f"{what}: default_quality = {d.get('default_quality')!r}")
    for key, kind in (("norm_options", dict), ("training", dict), ("gain_units", bool), ("description", str)):
        if key in d and not isinstance(d[key], kind):
            raise ModelError(f"{what}: {key} is not a {kind.__name__}")


def _check_weight_bytes(config: ModelConfig, header: dict, name: str) -> None:
    """The weights a config needs must be in the file: g_a and g_s alone hold 2 × 25 × (3N + 2N² + NM)
    values of two bytes or more (float16, ``half_weights``; float32), so a tiny file whose config
    claims huge widths is refused without building it."""
    n, m = config.N, config.M
    needed = 2 * 2 * 25 * (3 * n + 2 * n * n + n * m)
    held = 0
    for entry in header.values():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets):
            held = max(held, offsets[1])
    if held < needed:
        raise ModelError(f"checkpoint {name}: its config (N={n}, M={m}) needs at least {needed} bytes of weights, "
                         f"the file holds {held}")


def model_from_tensors(tensors: dict, config: ModelConfig):
    # deferred: torch and compressai: only building a model needs them (the CLI checks names first)
    from .registry import build_model

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
    quality: int | float
    sha256: str
    meta: dict

    def at(self, quality) -> "LoadedModel":
        """These weights (the same module) labelled with ``quality``, normalized: a continuous-rate
        model's one checkpoint serves every quality of its scale."""
        return replace(self, quality=self.config.normalize_quality(quality))


def load_checkpoint_file(path: Path, expected_sha256: str | None = None) -> LoadedModel:
    tensors, config, meta, digest = read_checkpoint(path, expected_sha256)
    model = model_from_tensors(tensors, config)
    # the metadata's quality is a position on the ladder (0: every quality, a continuous-rate model's)
    position = int(meta.get("quality", 0))
    quality = EVERY_QUALITY if position == EVERY_QUALITY else config.from_stored(position)
    return LoadedModel(model, config, quality, digest, meta)


@dataclass(frozen=True)
class CachedStore(Store):
    """A ``Store`` that keeps each checkpoint it loads, by file and sha256 (a re-shipped file loads
    anew), for as long as its owner holds it (``Store.cached()``): the modules it hands out are
    shared between its owner's calls and no one else's."""

    held: dict = field(default_factory=dict, compare=False, repr=False)

    def load_entry(self, entry: dict) -> LoadedModel:
        return self.hold((entry["file"], entry["sha256"]), lambda: Store.load_entry(self, entry))

    def hold(self, key: tuple, make):
        """What ``make()`` returned the first time this store was asked for ``key``, kept for as long
        as its owner holds the store (the light runtime's weights, models and sessions are kept
        here too: ``light.store.LightStore``)."""
        if key not in self.held:
            self.held[key] = make()
        return self.held[key]

    def cached(self) -> "CachedStore":
        return self
