"""Model variant configs: one declarative TOML file per variant in the top-level ``models/``.

A config names the architecture, the normalization (a key of the norm registry), the channel widths
N and M (and the hyperprior's, ``hyper_N``, where it is not N), the λ of every quality level and the
training recipe.  The resolved ``ModelConfig`` is also
stored inside every checkpoint, so weights never depend on the TOML file staying unchanged.

Qualities have one meaning across models: quality k is λ = ``LAMBDA_SCALE[k - 1]`` in every model
whose ladder is a run of consecutive values of that scale (every shipped model), so a model whose
ladder starts at the scale's second value takes qualities from 2.  What is persisted numbers the
ladder's own positions (1 = its first λ): a file's quality field, a manifest entry's and a
checkpoint's ``quality``, a config's ``default_quality`` in TOML and JSON.  ``ModelConfig.stored``
and ``ModelConfig.from_stored`` convert between the two, and nothing else does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..errors import ModelError


@dataclass(frozen=True)
class TrainingRecipe:
    """How the shipped rate points were trained (defaults of ``imgcodec train``)."""

    lr: float = 1e-3
    aux_lr: float = 1e-3
    batch_size: int = 8
    patch: int = 128
    clip_grad: float = 1.0
    decay_at: float = 0.85  # fraction of the budget after which the lr is multiplied by decay
    decay: float = 0.1
    metric: str = "mse"
    finetune_lr: float = 3e-4
    optimizer: str = "adam"  # adam or schedulefree (schedule-free AdamW, Defazio et al. 2024)
    schedule: str = "decay"  # decay: lr × decay after decay_at of the budget; constant: no decay
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none)
    quantization: str = "noise"  # noise everywhere, or mixed: noise in the rate, rounding into g_s
    downscale: float = 1.0  # crops drawn at a random scale in [downscale, 1] (1: none)


_RECIPE_WRITTEN_WHEN_SET = ("optimizer", "schedule", "ema", "quantization", "downscale")

# The common quality scale: quality k means λ = LAMBDA_SCALE[k - 1] (MSE) in every model whose
# ladder lies on it (docs/models.md, "Qualities").
LAMBDA_SCALE = (0.0009, 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.18, 0.36)


def scale_offset(lambdas) -> int | None:
    """How many values of ``LAMBDA_SCALE`` lie below the first λ of ``lambdas``, when ``lambdas``
    is a run of consecutive values of the scale; ``None`` for any other ladder."""
    lambdas = tuple(float(v) for v in lambdas)
    for offset in range(len(LAMBDA_SCALE) - len(lambdas) + 1):
        if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(lambdas, LAMBDA_SCALE[offset:])):
            return offset
    return None


def _canonical(centi: int) -> int | float:
    """A quality given in hundredths: an ``int`` when whole, else a float."""
    return centi // 100 if centi % 100 == 0 else centi / 100


@dataclass(frozen=True)
class ModelConfig:
    name: str
    architecture: str
    norm: str
    N: int
    M: int
    lambdas: tuple[float, ...]
    default_quality: int  # on the common scale (TOML and JSON store its position on the ladder)
    description: str = ""
    norm_options: dict = field(default_factory=dict)
    training: TrainingRecipe = field(default_factory=TrainingRecipe)
    # Continuous rate control (gain units, Cui et al. CVPR 2021): one set of weights serves every
    # quality from 1 to len(lambdas), fractional ones included (in hundredths).
    gain_units: bool = False
    # Channels of the hyperprior's h_a/h_s/h_m and of ẑ, when they differ from N (the width of
    # g_a/g_s): a model widened from a trained one keeps its source's hyperprior.
    hyper_N: int | None = None

    @property
    def hyper_channels(self) -> int:
        return self.N if self.hyper_N is None else self.hyper_N

    @property
    def on_scale(self) -> bool:
        """Whether the λ ladder is a run of ``LAMBDA_SCALE``, so that its qualities are the scale's."""
        return scale_offset(self.lambdas) is not None

    @property
    def offset(self) -> int:
        """The quality of the ladder's first λ, less one: its place on ``LAMBDA_SCALE`` (0 for a
        ladder not on the scale, whose levels are numbered from 1)."""
        return scale_offset(self.lambdas) or 0

    @property
    def qualities(self) -> range:
        """The quality levels of the λ ladder on the common scale (a continuous model also takes
        any value between)."""
        return range(1 + self.offset, len(self.lambdas) + 1 + self.offset)

    def stored(self, quality) -> int | float:
        """The position on the ladder (1 = its first λ) of a quality on the common scale: the number
        a file's header, a manifest entry, a checkpoint's metadata and a stored config hold."""
        return _canonical(round(float(self.normalize_quality(quality)) * 100) - 100 * self.offset)

    def from_stored(self, position) -> int | float:
        """The quality on the common scale of a position on the ladder as stored (``stored``'s
        inverse); validated, so a stored number outside the ladder is a ``ModelError``."""
        if isinstance(position, bool) or not isinstance(position, numbers.Real) or not math.isfinite(position):
            raise ModelError(f"stored quality must be a number, not {position!r}")
        return self.normalize_quality(_canonical(round(float(position) * 100) + 100 * self.offset))

    @property
    def continuous(self) -> bool:
        return self.gain_units

    def lmbda(self, quality: float) -> float:
        """The λ of a quality; between two levels of a continuous model, interpolated exponentially."""
        return self.lmbda_at(*self.level(quality))

    def lmbda_at(self, i: int, t: float) -> float:
        """The λ the fraction ``t`` of the way from level ``i`` to ``i + 1`` (see :meth:`level`)."""
        if t == 0:
            return self.lambdas[i]
        return self.lambdas[i] ** (1 - t) * self.lambdas[i + 1] ** t

    def level(self, quality: float) -> tuple[int, float]:
        """``(i, t)``: ``quality`` lies the fraction ``t`` of the way from level ``i`` to ``i + 1``
        (0-based, ``0 <= t < 1``; ``t = 0`` at every whole quality)."""
        q = self.normalize_quality(quality)
        return int(q) - self.qualities.start, round(q - int(q), 2)

    def normalize_quality(self, quality) -> int | float:
        """A valid quality of this model, canonical: an ``int`` when whole, else a float in hundredths.

        A file stores a fractional quality in hundredths (docs/bitstream.md), so a continuous model
        takes ``3.4`` or ``3.45`` and refuses ``3.456``; other models take whole numbers only.
        """
        if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not math.isfinite(quality):
            raise ModelError(f"quality must be a number, not {quality!r}")
        if quality != int(quality) and not self.continuous:
            raise ModelError(
                f"quality must be an integer for model {self.name!r}, not {quality!r} "
                "(only continuous-rate models take fractional qualities)"
            )
        centi = round(float(quality) * 100)
        if abs(float(quality) * 100 - centi) > 1e-6:
            raise ModelError(f"quality {quality!r}: at most two decimals (files store hundredths)")
        q = _canonical(centi)
        if not self.qualities.start <= q <= self.qualities.stop - 1:
            raise ModelError(
                f"quality {q} is out of range for model {self.name!r} "
                f"(valid: {self.qualities.start}..{self.qualities.stop - 1}"
                + (")" if self.on_scale else ", the positions of its λ ladder, which is not on the common scale)")
            )
        return q

    def check_quality(self, quality) -> None:
        self.normalize_quality(quality)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["default_quality"] = self.stored(self.default_quality)
        if not d["gain_units"]:  # written only when set: existing configs keep their JSON
            del d["gain_units"]
        if d["hyper_N"] is None:
            del d["hyper_N"]
        defaults = dataclasses.asdict(TrainingRecipe())
        for key in _RECIPE_WRITTEN_WHEN_SET:  # likewise: checkpoints from before these keys keep their JSON
            if d["training"][key] == defaults[key]:
                del d["training"][key]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config of a dict as TOML and JSON store it (``default_quality``: its position on the ladder)."""
        d = dict(d)
        try:
            training = TrainingRecipe(**d.pop("training", {}))
            d["lambdas"] = tuple(float(v) for v in d["lambdas"])
            position = d["default_quality"]
            if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= len(d["lambdas"]):
                raise ValueError(f"default_quality {position!r} is not a position on its λ ladder")
            d["default_quality"] = position + (scale_offset(d["lambdas"]) or 0)
            cfg = cls(training=training, **d)
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelError(f"invalid model config {d.get('name', '?')!r}: {exc}") from None
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, path: Path) -> "ModelConfig":
        try:
            d = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ModelError(f"cannot read model config {path}: {exc}") from None
        d.setdefault("name", Path(path).stem)
        return cls.from_dict(d)
