"""The options of one training run, checked once.

``TrainOptions`` is frozen and checked when it is built: paths are ``Path``s, every choice is an
enum, every number in its range, and a wrong value is one ``CodecError`` that names its flag.
``resolve()`` fills what was left to the model's recipe (``[training]`` of ``models/NAME.toml``)
and checks what needs the model; the rest of the trainer reads only resolved options.  No torch
here: the command line takes its choices from these enums at start-up.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

from ..errors import CodecError
from ..models.config import ModelConfig
from ..models.store import Store, default_store


class Choice(str, Enum):
    """An option with named values; a value is its spelling on the command line."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> list[str]:
        return [c.value for c in cls]

    @classmethod
    def parse(cls, value):
        try:
            return cls(value)
        except ValueError:
            raise CodecError(f"unknown {cls.__name__.lower()} {value!r} ({', '.join(cls.values())})") from None


class Precision(Choice):
    """Of the transforms (the entropy models, weights and optimizer state stay fp32)."""

    AUTO = "auto"  # bf16 where the hardware computes it natively, else fp32 (device.resolve_precision)
    FP32 = "fp32"
    BF16 = "bf16"


class Metric(Choice):
    MSE = "mse"  # D = 255²·MSE
    MS_SSIM = "ms-ssim"  # D = 1 − MS-SSIM (five scales: crops above 160 pixels)


class Optimizer(Choice):
    """Of the network (the entropy bottleneck's quantiles have their own Adam); built by
    ``optimizers.make_optimizer``."""

    ADAM = "adam"
    SCHEDULEFREE = "schedulefree"  # schedule-free AdamW: no lr schedule, no known end needed
    SOAP = "soap"  # Adam in the eigenbasis of Shampoo's preconditioner


class Schedule(Choice):
    DECAY = "decay"  # lr × the recipe's decay after its decay_at of the budget
    CONSTANT = "constant"


class Quantization(Choice):
    NOISE = "noise"  # additive uniform noise in the rate and into g_s
    MIXED = "mixed"  # noise in the rate, rounded latents (straight-through) into g_s


def _option(check=None, be: str = "", choice: type[Choice] | None = None, default=None):
    """A field with its check (``check(value)`` holds, else the flag "must be ``be``") or its enum."""
    return field(default=default, metadata={"check": check, "be": be, "choice": choice})


def _warmup(value) -> tuple[int, int, int] | None:
    """``"FROM:RAMP"`` or ``"FROM:HOLD:RAMP"`` (the command line), or such a tuple → ``(FROM, HOLD,
    RAMP)``: FROM and RAMP positive, HOLD (default 0) not negative."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in (value.split(":") if isinstance(value, str) else value)]
        if len(parts) == 2:
            parts.insert(1, 0)  # FROM:RAMP holds nothing
        first, hold, ramp = parts
    except (TypeError, ValueError):
        first = hold = ramp = 0
    if min(first, ramp) < 1 or hold < 0:
        raise CodecError("--latent-warmup must be FROM:RAMP or FROM:HOLD:RAMP, positive integers (HOLD may be 0; "
                         f"e.g. 96:1500 or 96:1500:1500), not {value!r}")
    return first, hold, ramp


def _paths(value) -> tuple[Path, ...]:
    if value is None:
        return ()
    return (Path(value),) if isinstance(value, (str, Path)) else tuple(Path(v) for v in value)


@dataclass(frozen=True)
class TrainOptions:
    """One run: the model, its data and budget, and the recipe's choices (``None``: the recipe's)."""

    model: str
    data: tuple[Path, ...]  # one folder or several: crops are drawn across all their images
    out: Path
    quality: int | None = None  # its λ; a continuous-rate model without it trains every level
    lmbda: float | None = _option(lambda v: v > 0, "positive")
    val: tuple[Path, ...] = ()
    steps: int | None = _option(lambda v: v >= 0, "at least 0")
    minutes: float | None = _option(lambda v: v > 0, "positive")
    resume: bool = False
    init: Path | None = None
    batch_size: int | None = _option(lambda v: v >= 1, "at least 1")
    patch: int | None = _option(lambda v: v > 0 and v % 16 == 0, "a positive multiple of 16")
    lr: float | None = _option(lambda v: v > 0, "positive")
    metric: Metric | None = _option(choice=Metric)
    checkpoint_seconds: float = _option(lambda v: v >= 0, "at least 0", default=120.0)
    val_every: int = _option(lambda v: v >= 1, "at least 1", default=1000)
    log_every: int = _option(lambda v: v >= 1, "at least 1", default=50)
    seed: int = 0
    workers: int = _option(lambda v: v >= 0, "at least 0", default=1)
    device: str = "cpu"
    ship: bool = False
    progress: bool = True  # a progress bar on stderr
    threads: int | None = _option(lambda v: v >= 1, "at least 1")  # torch intra-op threads (None: torch's)
    stop_after: int | None = None  # end this process early at that step (the schedule keeps `steps`)
    precision: Precision = _option(choice=Precision, default=Precision.AUTO)
    optimizer: Optimizer | None = _option(choice=Optimizer)
    schedule: Schedule | None = _option(choice=Schedule)
    ema: float | None = _option(lambda v: 0 <= v < 1, "in [0, 1)")  # decay of a moving average (0: none)
    quantization: Quantization | None = _option(choice=Quantization)
    downscale: float | None = _option(lambda v: 0 < v <= 1, "in (0, 1]")  # crops at a random scale in [S, 1]
    # (FROM, STEPS): the rate of latent channels FROM.. enters the loss with a weight rising from 0
    # to 1 over the run's first STEPS steps (``latent_rate_weight``)
    latent_warmup: tuple[int, int] | None = None
    home: Path | None = None  # the store root (models/, checkpoints/); None: the default store
    config: ModelConfig | None = field(default=None, repr=False, compare=False)  # set by resolve()

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("data", _paths(self.data))
        put("latent_warmup", _warmup(self.latent_warmup))
        put("val", _paths(self.val))
        for name in ("out", "init", "home"):
            if getattr(self, name) is not None:
                put(name, Path(getattr(self, name)))
        for f in fields(self):
            value, check, choice = getattr(self, f.name), f.metadata.get("check"), f.metadata.get("choice")
            if value is None:
                continue
            if choice is not None:
                put(f.name, choice.parse(value))
            elif check is not None and not check(value):
                raise CodecError(f"--{f.name.replace('_', '-')} must be {f.metadata['be']}, not {value}")
        if not self.data:
            raise CodecError("give at least one --data folder")
        if self.metric is Metric.MS_SSIM and self.patch is not None and self.patch <= 160:
            raise CodecError("--metric ms-ssim needs --patch above 160 (five MS-SSIM scales)")
        if self.optimizer is Optimizer.SCHEDULEFREE and self.schedule is Schedule.DECAY:
            raise CodecError("the schedule-free optimizer takes no lr schedule (--schedule constant)")

    @property
    def store(self) -> Store:
        """The store of ``home`` (``None``: the default store)."""
        return Store.at(self.home) if self.home else default_store()

    def resolve(self) -> TrainOptions:
        """These options over the model's recipe: every choice made, the model's config attached."""
        if self.config is not None:
            return self
        config = self.store.load_config(self.model)
        recipe = config.training
        # A continuous-rate model (gain units) trains every level of its λ ladder, one drawn per
        # step, unless --quality picks one.
        every_level = config.continuous and self.quality is None
        if config.continuous and self.lmbda is not None:
            raise CodecError(f"model {config.name!r} trains the λ of its quality levels: give --quality K "
                             "to train one level, or neither to train them all (not --lambda)")
        if self.lmbda is None and self.quality is None and not every_level:
            raise CodecError("give --quality or --lambda")
        if self.steps is None and self.minutes is None:
            raise CodecError("give --steps or --minutes")
        lmbda = None if every_level else self.lmbda if self.lmbda is not None else config.lmbda(self.quality)
        if self.latent_warmup is not None and not 0 < self.latent_warmup[0] < config.M:
            raise CodecError(f"--latent-warmup {':'.join(map(str, self.latent_warmup))}: the first warmed "
                             f"channel must lie in 1..{config.M - 1} (model {config.name!r} has M={config.M})")
        optimizer = Optimizer.parse(self.optimizer or recipe.optimizer)

        def pick(given, recipe_value):
            return recipe_value if given is None else given

        return dataclasses.replace(
            self, config=config, lmbda=lmbda,
            batch_size=pick(self.batch_size, recipe.batch_size), patch=pick(self.patch, recipe.patch),
            lr=pick(self.lr, recipe.finetune_lr if self.init else recipe.lr),
            metric=pick(self.metric, recipe.metric), optimizer=optimizer,
            # schedule-free AdamW replaces the schedule: a recipe's decay does not apply to it
            schedule=pick(self.schedule, Schedule.CONSTANT if optimizer is Optimizer.SCHEDULEFREE else recipe.schedule),
            ema=pick(self.ema, recipe.ema), quantization=pick(self.quantization, recipe.quantization),
            downscale=pick(self.downscale, recipe.downscale),
        )

    # What follows reads resolved options.

    @property
    def every_level(self) -> bool:
        return self.lmbda is None

    @property
    def val_quality(self) -> float | None:
        """The quality validation codes at: a continuous model's own (or its default), else none."""
        return (self.quality or self.config.default_quality) if self.config.continuous else None

    def budget_used(self, step: int, seconds: float) -> float:
        """The fraction of the budget (steps, or else minutes) spent after ``step`` steps in ``seconds``."""
        if self.steps is not None:
            return step / self.steps if self.steps else 1.0
        return seconds / (self.minutes * 60)

    def lr_at(self, progress: float) -> float:
        """The learning rate at ``progress`` (0..1) of the budget."""
        recipe = self.config.training
        decayed = self.schedule is Schedule.DECAY and progress >= recipe.decay_at
        return self.lr * (recipe.decay if decayed else 1.0)

    def latent_rate_weight(self, step: int) -> float | None:
        """The weight of the warmed latent channels' rate at ``step`` (``None``: no warm-up, or it is
        over).  Channels that carry no symbol sit at a stationary point of the R-D loss — any value
        they would take costs bits at the smallest scale before it pays in distortion — which the
        warm-up lifts: free for the first HOLD steps, then rising linearly to full price over RAMP
        steps."""
        if self.latent_warmup is None:
            return None
        _, hold, ramp = self.latent_warmup
        if step >= hold + ramp:
            return None
        return max(0, step - hold) / ramp

    def step_target(self, step: int, rank: int) -> tuple[float | None, float]:
        """``(quality, λ)`` of one step; a continuous model's level is drawn from (seed, step, rank)
        alone, so that a resumed run draws the same levels."""
        if not self.every_level:
            return self.quality, self.lmbda
        level = random.Random(f"{self.seed}:{step}:{rank}").randrange(len(self.config.lambdas))
        return self.config.qualities[level], self.config.lambdas[level]

    def to_json(self) -> dict:
        """The options as JSON values (the run's state file records them)."""
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v

        return {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "config"}
