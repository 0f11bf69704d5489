"""Evaluation on real bitstreams: metrics, the measuring loop, and the learned codec's curve.

Every number comes from the bytes a user would store and from decoding those bytes:

* **bpp** = 8 · (bytes of the whole file) / (width · height of the original image) — for imgcodec the
  complete ``.bin`` (header, payload, CRC), for a classical codec the complete file Pillow writes;
* **PSNR** on the 8-bit RGB output, 10·log10(255² / MSE) with the MSE over all pixels and channels;
* **MS-SSIM** (pytorch-msssim: 5 scales, 11×11 Gaussian window, data range 255) on the same arrays,
  also as −10·log10(1 − MS-SSIM) dB.  Five scales need at least ``MS_SSIM_MIN_SIDE`` = 161 pixels on
  the shorter side; for smaller images MS-SSIM is undefined and recorded as null (and the mean of a
  quality with any such image is null too: a mean over fewer images than bpp and PSNR would mislead);
* **encoding/decoding time** in seconds (wall clock of the codec call alone, image reading excluded,
  after one untimed warm-up per quality).

The per-quality figures are means over images (of bpp, PSNR, MS-SSIM), as CompressAI reports them.
Images are evaluated as RGB: an alpha channel is dropped, grayscale is coded as R = G = B.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import PIL
from tqdm import tqdm

from .. import __version__
from ..codec.imageio import CanonicalImage, find_images, load_rgb_array
from ..errors import InputError, ModelError
from ..format import bitstream
from ..models.store import default_store, load_checkpoint_file
from .results import Results, ms_ssim_to_db

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim asserts min side > (11 - 1) · 2⁴ for its 5 scales
WARMUP_SIDE = 64


# ---------------------------------------------------------------------------------------------
# Metrics


def bpp(nbytes: int, width: int, height: int) -> float:
    return 8.0 * nbytes / (width * height)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two 8-bit arrays; ``inf`` for identical ones."""
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(peak * peak / err)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 arrays; None where the image is too small for 5 scales.

    pytorch-msssim where the torch runtime runs (``light.dispatch.resolve``), else ``ms_ssim_numpy``:
    the same function in numpy (the two agree to 1e-5; ``tests/test_light_eval.py``)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    from ..light import dispatch

    if dispatch.resolve() == "onnx":
        return ms_ssim_numpy(a, b)
    # deferred: torch: only MS-SSIM needs it here
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(x):  # float32, as CompressAI computes it (float64 agrees to 1e-6, at 3x the time)
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(_ms_ssim(t(a), t(b), data_range=255.0, size_average=True))


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_filter(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """The 'valid' separable filtering of (C, H, W) by ``win`` along H, then W."""
    k = len(win)
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = sum(win[i] * x[:, i:i + h, :] for i in range(k))
    return sum(win[i] * out[:, :, i:i + w] for i in range(k))


def _avg_pool(x: np.ndarray) -> np.ndarray:
    """``F.avg_pool2d(kernel_size=2, padding=size % 2)`` (zeros counted) of (C, H, W)."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def ms_ssim_numpy(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """pytorch-msssim's ``ms_ssim`` (11-tap Gaussian window, σ 1.5, K = (0.01, 0.03), its five
    weights, channel mean) of two (H, W, 3) arrays, in float64 numpy: no torch."""
    coords = np.arange(11, dtype=np.float64) - 5
    win = np.exp(-(coords**2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x = np.asarray(a, np.float64).transpose(2, 0, 1)
    y = np.asarray(b, np.float64).transpose(2, 0, 1)
    values = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        mu1, mu2 = _gauss_filter(x, win), _gauss_filter(y, win)
        s11 = _gauss_filter(x * x, win) - mu1 * mu1
        s22 = _gauss_filter(y * y, win) - mu2 * mu2
        s12 = _gauss_filter(x * y, win) - mu1 * mu2
        cs_map = (2 * s12 + c2) / (s11 + s22 + c2)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            values.append(np.maximum(cs_map.mean(axis=(1, 2)), 0))
            x, y = _avg_pool(x), _avg_pool(y)
        else:
            ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs_map
            values.append(np.maximum(ssim_map.mean(axis=(1, 2)), 0))
    per_channel = np.prod([v ** w for v, w in zip(values, MS_SSIM_WEIGHTS)], axis=0)
    return float(per_channel.mean())


# ---------------------------------------------------------------------------------------------
# Images


@dataclass
class EvalImage:
    name: str  # path relative to the data folder, with forward slashes
    rgb: np.ndarray  # (H, W, 3) uint8
    sha256: str

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def load_images(folder: Path, limit: int | None = None) -> list[EvalImage]:
    """The images of ``folder`` (recursive, sorted), the first ``limit`` of them; all read up front,
    so an unreadable image stops the run before any measuring."""

    folder = Path(folder)
    paths = find_images(folder)
    if not paths:
        raise InputError(f"{folder}: no images (looked for .png, .jpg, .webp, .tif, .bmp, .ppm, .gif)")
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be at least 1, not {limit}")
        paths = paths[:limit]
    images = []
    for p in paths:
        rgb = load_rgb_array(p)
        images.append(EvalImage(p.relative_to(folder).as_posix(), rgb, hashlib.sha256(p.read_bytes()).hexdigest()))
    return images


def dataset_info(folder: Path, images: Sequence[EvalImage]) -> dict:
    """Names the image set; ``sha256`` identifies it (names and file contents) across result files."""
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.name}\0{im.sha256}\n".encode())
    return {
        "name": Path(folder).resolve().name,
        "images": len(images),
        "pixels": int(sum(im.width * im.height for im in images)),
        "sha256": h.hexdigest(),
    }


def environment(**extra) -> dict:
    env = {
        "imgcodec": __version__,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "machine": f"{platform.system()} {platform.machine()}",
    }
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# The measuring loop (shared by learned and classical codecs)

Encoder = Callable[[np.ndarray, object], bytes]  # (rgb, quality) -> file bytes
Decoder = Callable[[bytes], np.ndarray]  # file bytes -> (H, W, 3) uint8


def measure(image: EvalImage, quality, encode: Encoder, decode: Decoder) -> dict:
    """One per-image row: encode, decode the bytes, score the decoded pixels."""
    t0 = time.perf_counter()
    data = encode(image.rgb, quality)
    t1 = time.perf_counter()
    decoded = decode(data)
    t2 = time.perf_counter()
    if decoded.shape != image.rgb.shape:
        raise InputError(f"{image.name}: decoded {decoded.shape}, expected {image.rgb.shape}")
    ms = ms_ssim(image.rgb, decoded)
    return {
        "image": image.name,
        "width": image.width,
        "height": image.height,
        "quality": quality,
        "bytes": len(data),
        "bpp": bpp(len(data), image.width, image.height),
        "psnr-rgb": psnr(image.rgb, decoded),
        "ms-ssim-rgb": ms,
        "ms-ssim-rgb-db": ms_ssim_to_db(ms),
        "encoding_time": t1 - t0,
        "decoding_time": t2 - t1,
    }


def run(
    images: Sequence[EvalImage],
    qualities: Sequence,
    encode: Encoder,
    decode: Decoder,
    label: str = "eval",
    progress: bool | None = None,
) -> list[dict]:
    """Rows for every (quality, image); a progress bar on a terminal (``progress=None``)."""

    rows = []
    disable = None if progress is None else not progress
    with tqdm(total=len(images) * len(qualities), desc=label, unit="img", disable=disable) as bar:
        for q in qualities:
            warm = images[0].rgb[:WARMUP_SIDE, :WARMUP_SIDE]
            decode(encode(np.ascontiguousarray(warm), q))  # untimed: first-call set-up costs
            for im in images:
                rows.append(measure(im, q, encode, decode))
                bar.update(1)
    return rows


# ---------------------------------------------------------------------------------------------
# The learned codec


def parse_qualities(values: Sequence[str], allowed: Sequence[int] | None = None) -> list | None:
    """``-q 1 -q 2,3`` → [1, 2, 3]; ``all`` (or nothing) → None, meaning every shipped quality.

    ``-q 3.5``: a fractional quality, for a continuous-rate model (the model's config checks it)."""
    items = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
    if not items or items == ["all"]:
        return None
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ModelError(f"quality must be an integer or 'all' (fractional for a continuous-rate model), "
                             f"not {item!r}") from None
        out.append(int(value) if value == int(value) else value)
    return sorted(set(out))


def _label_quality(loaded, quality: int | None) -> int:
    """The quality written into the headers for a checkpoint outside the manifest."""
    if quality is not None:
        loaded.config.check_quality(quality)
        return quality
    if loaded.quality:
        return loaded.quality
    lmbda = loaded.meta.get("lambda")
    if lmbda is None:
        raise ModelError("the checkpoint names no quality: pass --quality K to label it")
    lambdas = loaded.config.lambdas
    return loaded.config.qualities[min(range(len(lambdas)), key=lambda i: abs(math.log(lambdas[i] / float(lmbda))))]


def evaluate_model(
    data: Path,
    model: str | None = None,
    qualities: Sequence[int] | None = None,
    checkpoint: Path | None = None,
    device: str = "cpu",
    limit: int | None = None,
    name: str | None = None,
    progress: bool | None = None,
    refine: int = 0,
    store=None,
) -> Results:
    """Evaluate shipped weights of ``model`` (all shipped qualities by default), or one checkpoint
    file, on the images of ``data``: real ``.bin`` bytes, decoded by the real decoder.

    ``refine``: steps of encoder-side refinement for every file (``refine.py``). ``store``: the
    ``models.store.Store`` of ``model`` (default: ``default_store()``); the weights it loads are
    held for this evaluation's encodes and decodes."""

    store = (store or default_store()).cached()

    if (model is None) == (checkpoint is None):
        raise ModelError("give a model name or a checkpoint file (one of them)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ModelError(f"cannot read checkpoint {checkpoint}: no such file")
    if model is not None:  # names and qualities are checked before anything heavy is loaded
        config = store.load_config(model)
        if qualities is None:
            qualities = store.shipped_qualities(model)
            if not qualities:
                raise ModelError(f"model {model!r} has no shipped weights (see `imgcodec models`)")
        for q in qualities:
            config.check_quality(q)
    from ..light import dispatch

    torch_only = "--checkpoint" if checkpoint is not None else "--refine" if refine else \
        f"--device {device}" if device != "cpu" else None
    runtime = dispatch.resolve(None, torch_only=torch_only)
    images = load_images(data, limit)

    if runtime == "onnx":
        # deferred: numpy, onnxruntime and numba: the light runtime, no torch
        import onnxruntime

        from ..light import codec as light
        from ..light.store import LightStore

        lights = LightStore(store)  # over the cached store: the models and sessions of this evaluation
        models = {q: lights.load(model, q) for q in qualities}
        entries = {q: store.shipped_entry(model, q)[0] for q in qualities}

        def decode(data: bytes) -> np.ndarray:
            return np.asarray(light.decode(data, store=lights).convert("RGB"))

        def encode(rgb: np.ndarray, q) -> bytes:
            lm, qn = models[q]
            return light.encode_canonical(CanonicalImage(rgb, None, False), lm, qn)

        config = models[qualities[0]][0].config
        weights = {str(q): {"sha256": lm.weights.sha256,
                            "lambda": config.lmbda(qn) if config.continuous else entries[q].get("lambda"),
                            "steps": entries[q].get("steps")} for q, (lm, qn) in sorted(models.items())}
        env = environment(runtime="onnx", onnxruntime=onnxruntime.__version__)
        return _results(images, data, models, encode, decode, config, name, config.name, refine, progress,
                        {"manifest": "checkpoints/manifest.json"}, weights, device, env)

    # deferred: torch loads once names and qualities are checked
    import torch

    # deferred: torch loads once names and qualities are checked
    from ..codec import api as codec

    if checkpoint is not None:
        loaded = load_checkpoint_file(Path(checkpoint))
        if loaded.config.continuous:  # one checkpoint, every quality: the levels of its λ ladder by default
            models = {m.quality: m for m in (loaded.at(q) for q in (qualities or loaded.config.qualities))}
        else:
            if qualities is not None and len(qualities) > 1:
                raise ModelError("a checkpoint is one rate point: give at most one --quality to label it")
            loaded = loaded.at(_label_quality(loaded, qualities[0] if qualities else None))
            models = {loaded.quality: loaded}
        source = {"checkpoint": str(checkpoint)}
    else:
        models = {q: store.load_shipped(model, q) for q in qualities}
        source = {"manifest": "checkpoints/manifest.json"}

    def decode(data: bytes) -> np.ndarray:
        # The real decoder; a checkpoint outside the manifest is handed to it explicitly.
        # the header holds the position on the ladder; ``models`` is keyed by the common scale
        own = models.get(config.from_stored(bitstream.unpack(data, max_pixels=None).header.quality)) \
            if checkpoint is not None else None
        return np.asarray(codec.decode(data, device=device, loaded=own, store=store).convert("RGB"))

    def encode(rgb: np.ndarray, q) -> bytes:
        return codec.encode_canonical(CanonicalImage(rgb, None, False), models[q], device, refine=refine)

    config = next(iter(models.values())).config
    weights = {
        # A continuous model's one checkpoint has no λ of its own: each quality has its level's.
        str(q): {"sha256": m.sha256, "lambda": m.config.lmbda(q) if m.config.continuous else m.meta.get("lambda"),
                 "steps": m.meta.get("steps")}
        for q, m in sorted(models.items())
    }
    env = environment(runtime="torch", torch=torch.__version__, torch_threads=torch.get_num_threads())
    default = config.name if checkpoint is None else f"{config.name} ({Path(checkpoint).stem})"
    return _results(images, data, models, encode, decode, config, name, default, refine, progress, source, weights,
                    device, env)


def _results(images, data: Path, models: dict, encode: Encoder, decode: Decoder, config, name, default: str,
             refine: int, progress, source: dict, weights: dict, device: str, env: dict) -> Results:
    """The ``Results`` of one learned model on ``images``, whichever runtime codes them."""
    label = name or default
    if refine and not name:
        label += f" refine {refine}"
    rows = run(images, sorted(models), encode, decode, label=label, progress=progress)
    settings = {
        "model": config.name,
        "config": json.loads(config.to_json()),
        **source,
        "weights": weights,
        "device": device,
        "refine_steps": refine,
        "colour": "RGB (alpha dropped, grayscale coded as R=G=B)",
        "bytes": "the whole .bin file: header, payload and CRC32",
    }
    return Results(
        name=label,
        description=config.description or config.name,
        kind="learned",
        settings=settings,
        dataset=dataset_info(data, images),
        images=rows,
        environment=env,
    )


# ---------------------------------------------------------------------------------------------
# Printing


def format_summary(res: Results) -> str:
    """The per-quality means as a small Markdown table."""
    r = res.results
    head = "| quality | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | enc (s) | dec (s) |"
    lines = [f"{res.name} on {res.dataset.get('name', '?')} ({res.dataset.get('images', '?')} images)", head,
             "|---|---|---|---|---|---|---|"]

    def f(v, spec):
        return "–" if v is None else format(v, spec)

    for i, q in enumerate(r["quality"]):
        lines.append(
            f"| {q} | {f(r['bpp'][i], '.4f')} | {f(r['psnr-rgb'][i], '.2f')} | {f(r['ms-ssim-rgb'][i], '.4f')} "
            f"| {f(r['ms-ssim-rgb-db'][i], '.2f')} | {f(r['encoding_time'][i], '.3f')} | {f(r['decoding_time'][i], '.3f')} |"
        )
    return "\n".join(lines)
