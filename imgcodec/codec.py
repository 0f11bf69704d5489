"""Encode and decode: image ↔ model ↔ bitstream.

The path of one encode: read and canonicalize the image (``imageio``), resolve model + quality to
verified weights (``store``), pad to the model's stride by replication, analyse and entropy-code
(``autoencoders``), pack header + parts + CRC (``bitstream``).  Decoding starts from the header,
which alone names the model, the weights, the size and the colour mode to restore.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import bitstream, rans, store, tiling
from .errors import BitstreamError, CodecError, ModelError
from .imageio import CanonicalImage, read_image, to_pil

DEFAULT_MODEL = "factorized-gdn"


def pad_image(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (N, C, h, w) at the bottom/right to (height, width): reflect, then replicate.

    Reflection continues the picture's texture, which costs fewer bits than a flat border.
    """
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    rh, rw = min(dh, x.shape[-2] - 1), min(dw, x.shape[-1] - 1)
    if rh > 0 or rw > 0:
        x = F.pad(x, (0, max(rw, 0), 0, max(rh, 0)), mode="reflect")
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), mode="replicate")


def _padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    return -(-h // stride) * stride, -(-w // stride) * stride


def array_to_tensor(rgb: np.ndarray, device: str = "cpu") -> torch.Tensor:
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255)


def tensor_to_array(x: torch.Tensor) -> np.ndarray:
    return x[0].mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def compress_rgb(model, rgb: np.ndarray, device: str = "cpu") -> bytes:
    """The latent payload of an (H, W, 3) uint8 image, for a one-part (factorized) model."""
    return _compress_latents(model, rgb, device, None, None)[0]


@torch.inference_mode()
def decompress_rgb(model, payload: bytes, height: int, width: int, device: str = "cpu") -> np.ndarray:
    ph, pw = _padded_size(height, width, model.stride)
    y_hat = rans.decode_latent(model.entropy_bottleneck, payload, (ph // model.stride, pw // model.stride))
    return tiling.synthesis(model, y_hat, height, width, device)


def latent_parts(model) -> int:
    """How many latent payload parts the model writes: 1 (factorized: ŷ), 2 (hyperprior: ẑ, ŷ)."""
    return getattr(model, "latent_parts", 1)


def compress_latents(model, rgb: np.ndarray, device: str = "cpu", quality=None, y=None, refine: int = 0) -> list[bytes]:
    """The latent payload parts of an (H, W, 3) uint8 image at ``quality`` (a continuous model's).

    ``y``: the analysis ``tiling.analysis(model, rgb)`` of a multi-part model, if already computed
    (a continuous model's quality search analyses once). ``refine``: steps of encoder-side
    refinement of the latents (``refine.py``; 0: none).
    """
    if refine:
        from .refine import refine_latents

        latents = refine_latents(model, rgb, quality, refine, device=device, y=y)
        with torch.inference_mode():
            return model.compress_coded(latents)
    return _compress_latents(model, rgb, device, quality, y)


@torch.inference_mode()
def _compress_latents(model, rgb: np.ndarray, device: str, quality, y) -> list[bytes]:
    if y is None:
        y = tiling.analysis(model, rgb, device)  # in overlapping tiles above a size: see tiling.py
    # compress_coded refuses latents the rANS coder cannot take (NaN, or 2**27 and above).
    return model.compress_coded(model.coded_latents(y, quality))


@torch.inference_mode()
def decompress_latents(model, parts, height: int, width: int, device: str = "cpu", quality=None) -> np.ndarray:
    if latent_parts(model) == 1:
        return decompress_rgb(model, parts[0], height, width, device)
    ph, pw = _padded_size(height, width, model.stride)
    y_hat = model.decompress_latent(parts, (ph // model.stride, pw // model.stride), quality)
    return tiling.synthesis(model, y_hat, height, width, device)


def code_array(model, rgb: np.ndarray, device: str = "cpu", quality=None) -> tuple[int, np.ndarray]:
    """Round trip through the real entropy coder: (payload bytes, decoded image)."""
    parts = compress_latents(model, rgb, device, quality)
    return sum(map(len, parts)), decompress_latents(model, parts, rgb.shape[0], rgb.shape[1], device, quality)


def _resolve(model: str | None, quality) -> store.LoadedModel:
    name = model or DEFAULT_MODEL
    config = store.load_config(name)
    return store.load_shipped(name, config.default_quality if quality is None else quality)


def encode_canonical(img: CanonicalImage, loaded: store.LoadedModel, device: str = "cpu", quality=None,
                     y=None, refine: int = 0) -> bytes:
    """``quality``: for a continuous model, any of its qualities (default: ``loaded.quality``);
    ``y``, ``refine``: see ``compress_latents``."""
    config = loaded.config
    q = config.normalize_quality(loaded.quality if quality is None else quality)
    if not config.continuous and q != loaded.quality:
        raise ModelError(f"these weights of {config.name!r} are quality {loaded.quality}, not {q}")
    model = loaded.model.to(device)
    parts = compress_latents(model, img.rgb, device, q, y, refine)
    latent = len(parts)
    if img.alpha is not None:
        parts.append(zlib.compress(img.alpha.tobytes(), 9))
    header = bitstream.Header(
        model=config.name,
        weights=bytes.fromhex(loaded.sha256)[: bitstream.HASH_PREFIX_BYTES],
        quality=q,
        width=img.size[0],
        height=img.size[1],
        mode=img.mode,
        latent_parts=latent,
    )
    return bitstream.pack(header, parts)


def encode(image, quality=None, model: str | None = None, device: str = "cpu", target_size: int | None = None,
           target_bpp: float | None = None, refine: int = 0) -> bytes:
    """Compress an image (a path or a ``PIL.Image``) to the bytes of an imgcodec file.

    ``target_size`` (bytes) or ``target_bpp``: instead of a quality, the highest quality whose file
    fits (``ratecontrol``). ``refine``: steps of encoder-side refinement (``refine.py``): a smaller
    file for the same quality, for a slower encode; the decoder is the same.
    """
    if target_size is not None or target_bpp is not None:
        from .ratecontrol import encode_to_target

        if quality is not None:
            raise ModelError("give a quality or a target size, not both")
        return encode_to_target(read_image(image), model, size=target_size, bpp=target_bpp, device=device,
                                refine=refine).data
    loaded = _resolve(model, quality)
    return encode_canonical(read_image(image), loaded, device, refine=refine)


def _model_for(header: bitstream.Header, loaded: store.LoadedModel | None = None) -> store.LoadedModel:
    """The weights a file needs: the shipped ones it names, or ``loaded`` if it is those weights."""
    if loaded is None:
        try:
            loaded = store.load_shipped(header.model, header.quality)
        except ModelError as exc:
            raise ModelError(
                f"this file needs model {header.model!r} quality {header.quality} "
                f"(weights {header.weights.hex()}): {exc}"
            ) from None
    if loaded.config.name != header.model or bytes.fromhex(loaded.sha256)[: bitstream.HASH_PREFIX_BYTES] != header.weights:
        raise ModelError(
            f"this file was made with other weights of {header.model!r} quality {header.quality} "
            f"(weights {header.weights.hex()}, installed {loaded.config.name} {loaded.sha256[:16]})"
        )
    return loaded


def decode(
    data: bytes,
    device: str = "cpu",
    max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS,
    loaded: store.LoadedModel | None = None,
) -> Image.Image:
    """Decode the bytes of an imgcodec file to a ``PIL.Image`` of the original size and mode.

    ``loaded``: decode with these weights (e.g. a fresh training result not in the manifest);
    the file must name exactly them.
    """
    stream = bitstream.unpack(data, max_pixels=max_pixels)
    h = stream.header
    loaded = _model_for(h, loaded)
    k = latent_parts(loaded.model)
    if h.latent_parts != k:
        raise BitstreamError(f"corrupt header: {h.latent_parts} latent parts, but model {h.model!r} writes {k}")
    try:
        rgb = decompress_latents(loaded.model.to(device), stream.parts[:k], h.height, h.width, device, h.quality)
    except CodecError:
        raise
    except Exception as exc:  # the rANS decoder rejects a damaged payload in its own words
        raise BitstreamError(f"corrupt payload: {exc}") from None
    alpha = None
    if h.has_alpha:
        try:
            raw = zlib.decompressobj().decompress(stream.parts[k], h.width * h.height + 1)
        except zlib.error:
            raise BitstreamError("corrupt alpha plane") from None
        if len(raw) != h.width * h.height:
            raise BitstreamError("corrupt alpha plane")
        alpha = np.frombuffer(raw, dtype=np.uint8).reshape(h.height, h.width)
    return to_pil(rgb, alpha, gray=h.mode.startswith("L"))


def read_info(data: bytes) -> bitstream.Bitstream:
    return bitstream.unpack(data, max_pixels=None)


def _read_input(src: Path) -> bytes:
    from .errors import InputError

    try:
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{src} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {src}: {exc.strerror or exc}") from None


def encode_file(src: Path, dst: Path, quality=None, model=None, device="cpu", force=False, refine: int = 0,
                **targets) -> bytes:
    """Encode ``src`` into ``dst``; the temporary output is opened first so a bad target fails fast.

    ``targets``: ``target_size`` or ``target_bpp`` of ``encode``; ``refine``: see ``encode``."""
    from .atomic import atomic_open

    with atomic_open(Path(dst), force) as f:
        data = encode(src, quality=quality, model=model, device=device, refine=refine, **targets)
        f.write(data)
    return data


def decode_file(src: Path, dst: Path, device="cpu", force=False, max_pixels=bitstream.DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``src`` into an image file ``dst`` (format from its extension)."""
    from .atomic import atomic_open
    from .imageio import image_bytes, output_format

    output_format(Path(dst))
    with atomic_open(Path(dst), force) as f:
        img = decode(_read_input(src), device=device, max_pixels=max_pixels)
        f.write(image_bytes(img, Path(dst)))
    return img
