"""Which runtime encodes and decodes: ``torch`` (``codec/api.py``) or ``onnx`` (``light/codec.py``).

Both write and read the same format; a file written by either decodes in the other to the same
latents (docs/bitstream.md), the pixels within the bound of the float32 synthesis.  The choice is
explicit, never a silent fallback:

* ``runtime="torch"`` or ``"onnx"`` (the CLI's ``--runtime``), else ``$IMGCODEC_RUNTIME``, else
  ``auto``: torch where it is installed (``pip install 'imgcodec[train]'``), ONNX Runtime otherwise
  (``pip install imgcodec``);
* refinement (``refine > 0``), a GPU (``device != "cpu"``) and decoding with given weights
  (``loaded=``) need torch: asked of the ONNX runtime they are an error, not a switch.

``imgcodec info --verbose`` and ``imgcodec bench`` say which runtime ran.
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import CodecError
from ..format import bitstream

RUNTIMES = ("torch", "onnx")
ENV = "IMGCODEC_RUNTIME"


def torch_installed() -> bool:
    """Whether torch can be imported (found, not imported: this costs no torch import)."""
    return importlib.util.find_spec("torch") is not None


def resolve(runtime: str | None = None, *, torch_only: str | None = None) -> str:
    """The runtime to run: ``runtime``, else ``$IMGCODEC_RUNTIME``, else the installed one.
    ``torch_only``: a feature asked for that only torch has (its name, for the message)."""
    name = (runtime or os.environ.get(ENV, "") or "auto").strip().lower()
    if name not in RUNTIMES + ("auto",):
        raise CodecError(f"unknown runtime {name!r} (torch, onnx or auto)")
    if name == "auto":
        name = "torch" if torch_installed() or torch_only else "onnx"
    if name == "onnx" and torch_only:
        raise CodecError(f"{torch_only} needs the torch runtime (pip install 'imgcodec[train]'; --runtime torch)")
    if name == "torch" and not torch_installed():
        raise CodecError("the torch runtime needs torch: pip install 'imgcodec[train]' (or use --runtime onnx)")
    return name


def _torch_only(refine: int = 0, device: str = "cpu", loaded=None) -> str | None:
    if refine:
        return "--refine"
    if device != "cpu":
        return f"--device {device}"
    if loaded is not None:
        return "decoding with given weights"
    return None


def encode(image, quality=None, model: str | None = None, device: str = "cpu", target_size: int | None = None,
           target_bpp: float | None = None, refine: int = 0, metadata: str = "all", to_srgb: bool = False,
           store=None, runtime: str | None = None) -> bytes:
    """``codec.api.encode`` on the chosen runtime (``resolve``)."""
    if resolve(runtime, torch_only=_torch_only(refine, device)) == "torch":
        from ..codec import api  # deferred: torch loads here

        return api.encode(image, quality=quality, model=model, device=device, target_size=target_size,
                          target_bpp=target_bpp, refine=refine, metadata=metadata, to_srgb=to_srgb, store=store)
    from . import codec  # deferred: numpy, onnxruntime and numba load here

    return codec.encode(image, quality=quality, model=model, target_size=target_size, target_bpp=target_bpp,
                        metadata=metadata, to_srgb=to_srgb, store=store)


def decode(data, device: str = "cpu", max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS, loaded=None,
           store=None, runtime: str | None = None):
    """``codec.api.decode`` on the chosen runtime (``resolve``)."""
    if resolve(runtime, torch_only=_torch_only(device=device, loaded=loaded)) == "torch":
        from ..codec import api  # deferred: torch loads here

        return api.decode(data, device=device, max_pixels=max_pixels, loaded=loaded, store=store)
    from . import codec  # deferred: numpy, onnxruntime and numba load here

    return codec.decode(data, max_pixels=max_pixels, store=store)


def read_info(data: bytes) -> bitstream.Bitstream:
    return bitstream.unpack(data, max_pixels=None)


def describe(model: str, quality, runtime: str | None = None, store=None) -> str:
    """The runtime that would decode a file of (model, quality) here, and what it runs: one line."""
    try:
        name = resolve(runtime)
    except CodecError as exc:
        return f"none ({exc})"
    if name == "torch":
        import torch  # deferred: only --verbose asks

        return f"torch {torch.__version__} (compressai entropy models, numba rANS decoder)"
    import onnxruntime  # deferred: only --verbose asks

    from .store import light_store

    try:
        light_store(store).weights(model, quality)[0].verify_graphs()
        graphs = "graphs verified"
    except CodecError as exc:
        graphs = str(exc)
    coder = "numba" if importlib.util.find_spec("numba") is not None else "Python"
    return f"onnx (onnxruntime {onnxruntime.__version__}; {graphs}; numpy fixed point; rANS coder in {coder})"
