"""Result files: one JSON schema for every measured curve, and readers for published curves.

A measured curve (``imgcodec eval`` or ``imgcodec baseline``) is written in the schema
``imgcodec-results/1`` (documented in ``docs/evaluation.md``)::

    {
      "format": "imgcodec-results/1",
      "name": "jpeg",                              # the curve's label in plots and tables
      "description": "JPEG 4:2:0 (libjpeg-turbo) via Pillow",
      "kind": "classical",                         # or "learned"
      "settings": {...},                           # everything that fixes the codec's output
      "environment": {...},                        # versions, threads, device (not part of the result)
      "dataset": {"name": "kodak", "images": 24, "pixels": 9437184, "sha256": "..."},
      "results": {                                 # per-quality means, as CompressAI writes them
        "quality": [10, 20, ...], "bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
        "ms-ssim-rgb-db": [...], "encoding_time": [...], "decoding_time": [...]
      },
      "images": [{"image": "kodim01.png", "width": 768, "height": 512, "quality": 10, "bytes": 15727,
                  "bpp": 0.32, "psnr-rgb": 26.1, "ms-ssim-rgb": 0.93, "ms-ssim-rgb-db": 11.6,
                  "encoding_time": 0.004, "decoding_time": 0.002}, ...]
    }

``load_curves`` also reads two foreign schemas, so published numbers sit beside measured ones:
CompressAI's result files (``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...]}}``,
older ones with ``"psnr"``/``"ms-ssim"``) and collections of curves
(``{"curves": {"label": {"bpp": [...], "psnr-rgb": [...]}}}``, as ``results/anchors/kodak.json``).
Anything else is refused with one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..errors import InputError

FORMAT = "imgcodec-results/1"

# Per-image and per-quality metrics, in CompressAI's key names where CompressAI has one.
METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "encoding_time", "decoding_time")
REQUIRED = ("bpp", "psnr-rgb")
# Older CompressAI files (and some papers' files) name the metrics without the colour space.
ALIASES = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-rgb", "ms-ssim-db": "ms-ssim-rgb-db"}

# What ``--metric`` names on the command line → the key holding that distortion, in dB.
DISTORTIONS = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-rgb-db"}
DISTORTION_LABELS = {
    "psnr": "PSNR RGB (dB)",
    "ms-ssim": "MS-SSIM RGB (dB, −10·log10(1 − MS-SSIM))",
}


class ResultsError(InputError):
    """A results file is unreadable, of another schema, or unusable for what was asked."""


class NoOverlapError(ResultsError):
    """Two curves share no range of rate (or quality) over which they can be compared."""


def ms_ssim_to_db(value: float | None) -> float | None:
    """−10·log10(1 − MS-SSIM): the dB scale on which MS-SSIM curves are usually drawn."""
    if value is None or not math.isfinite(value):
        return None
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


# ---------------------------------------------------------------------------------------------
# The measured-results file


@dataclass
class Results:
    """One measured curve: a codec at several qualities over one image set."""

    name: str
    description: str
    kind: str
    settings: dict
    dataset: dict
    images: list[dict]
    environment: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.results:
            self.results = summarize(self.images)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "settings": self.settings,
            "environment": self.environment,
            "dataset": self.dataset,
            "results": self.results,
            "images": self.images,
        }

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=1, allow_nan=False) + "\n"

    def save(self, path: Path, force: bool = False) -> None:
        write_bytes_atomic(Path(path), self.to_json().encode("utf-8"), force=force)

    def curve(self, source: str = "") -> "Curve":
        points = _metrics(source or self.name, "'results'", self.results)
        return Curve(self.name, points, published=False, source=source, dataset=self.dataset)


def _finite(obj):
    """JSON has no infinity: a non-finite number (PSNR of identical images) is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _mean(values: list) -> float | None:
    """The mean, or None where any value is missing (a mean over fewer images would mislead)."""
    if not values or any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


def summarize(images: list[dict]) -> dict:
    """Per-quality means of per-image rows, qualities in ascending order."""
    qualities = sorted({row["quality"] for row in images})
    out: dict[str, list] = {"quality": qualities}
    for key in METRICS:
        out[key] = [_mean([row.get(key) for row in images if row["quality"] == q]) for q in qualities]
    return out


def _fail(path, reason: str) -> ResultsError:
    return ResultsError(f"{path}: {reason}")


def _read_json(path: Path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ResultsError(f"{path} is a folder, not a results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _fail(path, f"not a JSON results file ({exc})") from None


def _series(path, where: str, data: dict, key: str, n: int | None) -> list | None:
    values = data.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or not all(v is None or _is_number(v) for v in values):
        raise _fail(path, f"{where}: {key!r} is not a list of numbers")
    if n is not None and len(values) != n:
        raise _fail(path, f"{where}: {key!r} has {len(values)} values, 'bpp' has {n}")
    return [None if v is None else float(v) for v in values]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _metrics(path, where: str, data: dict) -> dict:
    """The metric lists of one curve, under canonical names, validated to one length."""
    if not isinstance(data, dict):
        raise _fail(path, f"{where} is not an object")
    data = {ALIASES.get(k, k): v for k, v in data.items()}
    for key in REQUIRED:
        if key not in data:
            raise _fail(path, f"{where} has no {key!r} values")
    bpp = _series(path, where, data, "bpp", None)
    out = {"bpp": bpp}
    for key in ("quality",) + METRICS[1:]:
        values = _series(path, where, data, key, len(bpp))
        if values is not None:
            out[key] = values
    if "ms-ssim-rgb" in out:  # the dB scale follows from MS-SSIM where a file leaves it out
        db = out.get("ms-ssim-rgb-db") or [None] * len(bpp)
        out["ms-ssim-rgb-db"] = [ms_ssim_to_db(m) if d is None else d for m, d in zip(out["ms-ssim-rgb"], db)]
    return out


def load(path: Path) -> Results:
    """Read an ``imgcodec-results/1`` file (the measured schema only); ``ResultsError`` otherwise."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        what = f"format {found!r}" if found else "another schema"
        raise _fail(path, f"not an {FORMAT} file ({what})")
    for key, kind in (("name", str), ("settings", dict), ("dataset", dict), ("images", list), ("results", dict)):
        if not isinstance(data.get(key), kind):
            raise _fail(path, f"{FORMAT} file without a valid {key!r}")
    for row in data["images"]:
        if not isinstance(row, dict) or not {"image", "quality", "bytes", "bpp", "psnr-rgb"} <= row.keys():
            raise _fail(path, "an 'images' row lacks image, quality, bytes, bpp or psnr-rgb")
    _metrics(path, "'results'", data["results"])
    return Results(
        name=data["name"],
        description=str(data.get("description", "")),
        kind=str(data.get("kind", "")),
        settings=data["settings"],
        dataset=data["dataset"],
        images=data["images"],
        environment=dict(data.get("environment") or {}),
        results=data["results"],
    )


# ---------------------------------------------------------------------------------------------
# Curves from any supported file


@dataclass
class Curve:
    """Rate–distortion points of one system, as read from a file of any supported schema."""

    name: str
    points: dict  # metric key → list (same length as points["bpp"]), None where unknown
    published: bool  # numbers from elsewhere (drawn dashed), not measured here
    source: str = ""
    dataset: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points["bpp"])

    def xy(self, metric: str = "psnr") -> tuple[list[float], list[float]]:
        """(bpp, distortion in dB) of the points where both are known and finite."""
        key = DISTORTIONS[metric]
        ys = self.points.get(key) or [None] * len(self)
        pairs = [
            (x, y) for x, y in zip(self.points["bpp"], ys)
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def load_curves(path: Path) -> list[Curve]:
    """The curves of an imgcodec results file, a CompressAI result file or a curve collection."""
    data = _read_json(path)
    src = str(path)
    if isinstance(data, dict) and "format" in data:
        return [load(path).curve(src)]
    if isinstance(data, dict) and isinstance(data.get("curves"), dict) and data["curves"]:
        dataset = {"name": data["dataset"]} if isinstance(data.get("dataset"), str) else {}
        return [
            Curve(str(label), _metrics(path, f"curve {label!r}", c), published=True, source=src, dataset=dataset)
            for label, c in data["curves"].items()
        ]
    if isinstance(data, dict) and isinstance(data.get("results"), dict) and isinstance(data.get("name"), str):
        return [Curve(data["name"], _metrics(path, "'results'", data["results"]), published=True, source=src)]
    raise _fail(
        path,
        f"not a results file (expected {FORMAT}, a CompressAI result file or a 'curves' collection)",
    )


def load_all(paths) -> list[Curve]:
    """Every curve of every file, names made unique (a repeated name gets its file's name added)."""
    curves = [c for p in paths for c in load_curves(Path(p))]
    if not curves:
        raise ResultsError("no results files given")
    seen: dict[str, int] = {}
    for c in curves:
        seen[c.name] = seen.get(c.name, 0) + 1
    for c in curves:
        if seen[c.name] > 1:
            c.name = f"{c.name} ({Path(c.source).name})"
    return curves


def find_curve(curves: list[Curve], name: str) -> Curve:
    """The curve called ``name``: exactly, else case-insensitively, else by a unique prefix."""
    for match in (
        lambda c: c.name == name,
        lambda c: c.name.lower() == name.lower(),
        lambda c: c.name.lower().startswith(name.lower()),
    ):
        hits = [c for c in curves if match(c)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ResultsError(f"{name!r} names several curves: {', '.join(c.name for c in hits)}")
    raise ResultsError(f"no curve called {name!r} (curves: {', '.join(c.name for c in curves)})")


def dataset_note(curves: list[Curve]) -> str | None:
    """A warning where measured curves come from different image sets (their deltas mislead)."""
    sets: dict[str, list[str]] = {}
    for c in curves:
        if not c.published and c.dataset.get("sha256"):
            sets.setdefault(c.dataset["sha256"], []).append(c.name)
    if len(sets) < 2:
        return None
    groups = "; ".join(", ".join(names) for names in sets.values())
    return f"Note: these curves were measured on different image sets ({groups})."
