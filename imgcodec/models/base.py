"""The model contract (``CodecModel``), the rate point its methods take (``RatePoint``), and what
every architecture shares: the coder's rounding, its differentiable stand-ins, full-precision
entropy models and the rate of a training pass."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ..errors import ModelError
from ..format import rans
from .compressai_parts import CompressionModel
from .config import ModelConfig
from .norms import get_norm


def round_ste(v: torch.Tensor, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``round(v - offset) + offset`` in the forward pass, the identity in the backward pass
    (straight-through): what the coder will code, with a usable gradient."""
    return v + (torch.round(v - offset) + offset - v).detach()


def round_soft(v: torch.Tensor, offset: torch.Tensor | float = 0.0, tau: float = 0.5) -> torch.Tensor:
    r"""A differentiable stand-in for ``round(v - offset) + offset``: between the two integers
    around ``v`` (after the offset), weights that tend to rounding as ``tau`` → 0,

    .. math::
        \lfloor v \rfloor + \sigma\Big(\frac{\operatorname{atanh}(r) - \operatorname{atanh}(1 - r)}{\tau}\Big),
        \quad r = v - \lfloor v \rfloor,

    the expectation of the annealed two-point distribution of Yang, Bamler, Mandt, "Improving
    Inference for Neural Image Compression" (NeurIPS 2020), without its Gumbel sampling."""
    u = v - offset
    floor = torch.floor(u).detach()
    r = (u - floor).clamp(1e-4, 1 - 1e-4)
    return floor + torch.sigmoid((torch.atanh(r) - torch.atanh(1 - r)) / tau) + offset


@contextlib.contextmanager
def full_precision(t: torch.Tensor):
    """Autocast off for the entropy models: under ``--precision bf16`` the transforms run in bf16,
    but likelihoods, quantiles and CDF tables stay fp32 so that the rate term is exact (a bf16
    likelihood has 8 significant bits; its log2 would be off by up to 0.4 %)."""
    with torch.autocast(t.device.type, enabled=False):
        yield


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Rate estimate of a training pass: −Σ log2 p over all latents, per image pixel."""
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)


def check_codable(t: torch.Tensor) -> None:
    """Refuse latents the rANS coder cannot take: compressai's encoder loops forever on a value of
    2**27 or more (or NaN)."""
    if t.numel() and (not bool(torch.isfinite(t).all()) or float(t.abs().max()) >= rans.MAX_LATENT):
        raise ModelError("the model produced latents out of range (NaN or huge): broken weights?")


def embed(target: torch.Tensor, old: torch.Tensor, places: dict[int, torch.Tensor], zero: tuple[int, ...] = ()) -> None:
    """Put ``old`` into the larger ``target`` in place: along each dimension ``d`` of ``places`` the
    old index ``i`` goes to ``places[d][i]`` (elsewhere to ``i``).  The entries that no old index
    reaches along a dimension of ``zero`` become zero; the others keep ``target``'s (fresh) values.
    The building block of growing a trained model wider as the same function."""
    index = []
    for d, n in enumerate(old.shape):
        at = places.get(d, torch.arange(n))
        if d in zero:
            fresh = torch.ones(target.shape[d], dtype=torch.bool)
            fresh[at] = False
            target.index_fill_(d, fresh.nonzero().flatten(), 0)
        index.append(at.reshape([-1 if k == d else 1 for k in range(old.dim())]))
    target[tuple(index)] = old


def round_hard(v: torch.Tensor, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``round(v - offset) + offset``: the coder's rounding, without a gradient."""
    return torch.round(v - offset) + offset


# Pixels of context on each side that one value of g_a or g_s depends on: four 5×5 stride-2
# (transposed) convolutions reach 2 · (1 + 2 + 4 + 8) = 30 pixels.
LOCAL_FOOTPRINT = 30


@dataclass(frozen=True, eq=False)
class RatePoint:
    """One rate point of a model, resolved once (:meth:`CodecModel.rate_point`) and passed to its
    methods: the normalized ``quality`` (an ``int`` when whole, else hundredths), its ``lmbda``
    (λ) and, for a model with gain units, the ``gain`` and ``inverse`` gain, (1, M, 1, 1) each on
    the model's device (``None`` without gain units).  Resolved with gradients enabled (training)
    the gains carry the gradient of the learned gain units."""

    quality: int | float
    lmbda: float
    gain: torch.Tensor | None = None
    inverse: torch.Tensor | None = None


class CodecModel(CompressionModel):
    """The contract every architecture implements in full; the codec, tiling, rate control,
    refinement and the trainer call only these members.

    Declared:

    - ``g_a``, ``g_s``: the analysis and synthesis transforms (``nn.Sequential``), which tiling runs
      directly;
    - ``stride``: pixels per latent of ``g_a`` (the input is padded to a multiple of it);
    - ``latent_parts``: how many payload parts ``compress_coded`` writes (the header's K);
    - :attr:`footprint`: pixels of context either side of one value of ``g_a``/``g_s``, or ``None``
      when a norm with spatial statistics makes every value depend on the whole frame (never tiled);
    - ``supports_gain_units``: whether a config may ask for gain units (one set of weights, every
      quality); ``grows_from``: the architectures whose trained weights :meth:`grow_from` takes.

    Methods; ``point`` is a :class:`RatePoint` of this model, resolved once by the caller:

    - ``rate_point(quality)``: the rate point of a quality (``None``: the config's default),
      validated and normalized once; no method re-normalizes;
    - ``forward(x, point, quantization)``: the training pass, ``{"x_hat", "likelihoods"}``
      (``point=None``: the default rate point, as for ``reconstruct``);
    - ``coded_latents(y, point)``: the tensors the coder codes for the analysis ``y = g_a(x)``;
    - ``rd_pass(latents, point, rounding)``: ``(bits, x̂)`` of coding them, differentiable in the
      latents (the objective of refinement);
    - ``compress_coded(latents)``: the payload parts; ``decompress_latents(parts, shape, point)``:
      the ``ŷ`` that ``g_s`` synthesises, decoded from them;
    - ``reconstruct(x, point)``: what the decoder will output, without coding;
    - ``grow_from(source)``, ``grow_latent(source)``: take trained weights as the same function.
    """

    stride = 16
    latent_parts = 1
    supports_gain_units = False
    grows_from: tuple[str, ...] = ()
    config: ModelConfig
    g_a: torch.nn.Sequential
    g_s: torch.nn.Sequential

    @property
    def footprint(self) -> int | None:
        """``LOCAL_FOOTPRINT``: ``g_a``/``g_s`` are four 5×5 stride-2 (transposed) convolutions with a
        norm that the registry declares ``local`` (each position alone), so that tiles reproduce
        the whole frame; ``None`` for a norm with statistics over H and W (or, in training, over the
        batch), which makes every value depend on the whole frame (never tiled)."""
        norm = get_norm(self.config.norm)
        if norm.local and not (self.training and norm.batch_dependent):
            return LOCAL_FOOTPRINT
        return None

    def rate_point(self, quality=None) -> RatePoint:
        """The rate point of ``quality`` (``None``: the config's default): checked and normalized
        once (``ModelConfig.normalize_quality``), with its λ and the gains of the gain units
        (differentiable where gradients are enabled).  A ``RatePoint`` (of this model) is returned
        as it is, so that a helper may take either."""
        if isinstance(quality, RatePoint):
            return quality
        config = self.config
        q = config.normalize_quality(config.default_quality if quality is None else quality)
        level = config.level(q)
        gain, inverse = self.level_gains(*level)
        return RatePoint(q, config.lmbda_at(*level), gain, inverse)

    def level_gains(self, i: int, t: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gain and inverse gain the fraction ``t`` of the way from level ``i`` to ``i + 1``;
        ``(None, None)`` without gain units."""
        return None, None

    def forward(self, x: torch.Tensor, point: RatePoint | None = None, quantization: str = "noise") -> dict:
        raise NotImplementedError

    def coded_latents(self, y: torch.Tensor, point: RatePoint) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def rd_pass(self, latents: tuple[torch.Tensor, ...], point: RatePoint,
                rounding=round_ste) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def compress_coded(self, latents: tuple[torch.Tensor, ...]) -> list[bytes]:
        raise NotImplementedError

    def decompress_latents(self, parts, shape: tuple[int, int], point: RatePoint) -> torch.Tensor:
        raise NotImplementedError

    def grow_from(self, source: "CodecModel") -> None:
        raise ModelError(f"architecture {self.config.architecture!r} grows from no other")

    def grow_latent(self, source: "CodecModel") -> None:
        """Take the weights of ``source``, the same model with fewer latent channels (M), as the
        same function: the new channels start at zero and cost (almost) no bits, yet learn."""
        raise ModelError(f"architecture {self.config.architecture!r} does not grow along M")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, point: RatePoint | None = None) -> torch.Tensor:
        """What the decoder will output for ``x`` (rounding as the coder does), without coding;
        ``point``: ``None`` for the default rate point."""
        point = self.rate_point() if point is None else point
        _, x_hat = self.rd_pass(self.coded_latents(self.g_a(x), point), point, rounding=round_hard)
        return x_hat.clamp_(0, 1)
