"""Model variant configs: one declarative TOML file per variant in the top-level ``models/``.

A config names the architecture, the normalization (a key of the norm registry), the channel widths
N and M, the λ of every quality level and the training recipe.  The resolved ``ModelConfig`` is also
stored inside every checkpoint, so weights never depend on the TOML file staying unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from .errors import ModelError


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


@dataclass(frozen=True)
class ModelConfig:
    name: str
    architecture: str
    norm: str
    N: int
    M: int
    lambdas: tuple[float, ...]
    default_quality: int
    description: str = ""
    norm_options: dict = field(default_factory=dict)
    training: TrainingRecipe = field(default_factory=TrainingRecipe)

    @property
    def qualities(self) -> range:
        return range(1, len(self.lambdas) + 1)

    def lmbda(self, quality: int) -> float:
        self.check_quality(quality)
        return self.lambdas[quality - 1]

    def check_quality(self, quality: int) -> None:
        if quality not in self.qualities:
            raise ModelError(
                f"quality {quality} is out of range for model {self.name!r} "
                f"(valid: {self.qualities.start}..{self.qualities.stop - 1})"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        try:
            training = TrainingRecipe(**d.pop("training", {}))
            d["lambdas"] = tuple(float(v) for v in d["lambdas"])
            cfg = cls(training=training, **d)
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelError(f"invalid model config {d.get('name', '?')!r}: {exc}") from None
        if not 1 <= cfg.default_quality <= len(cfg.lambdas):
            raise ModelError(f"invalid model config {cfg.name!r}: default_quality out of range")
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
