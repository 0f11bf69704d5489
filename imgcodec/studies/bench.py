"""Speed and memory benchmark: ``imgcodec bench``; the figures of docs/performance.md.

Sections (``--sections``, all by default):

* ``peer``: encode and decode seconds per image in-process (median of the repetitions after a
  warm-up), against compressai's own ``compressai.models.FactorizedPrior`` holding the same weights
  (``.compress``/``.decompress``), the two alternated image by image in the same process: the
  ratio is the figure.  Both get the same 8-bit image and hand back 8-bit pixels; the identity of
  the latents (our payload against compressai's string) and of the decoded pixels (our decoder
  against ``.decompress`` on the same payload) is checked on every image.
* ``split``: where our time goes: image I/O (PNG read, PNG write), transforms, entropy coding,
  container, model loading.
* ``flops``: the transforms' convolution FLOPs and achieved GFLOP/s, against a plain large
  convolution and a matrix product on the same machine (the practical limit).
* ``techniques``: each optimization measured on its own (channels-last, inference mode, oneDNN,
  threads, the compiled rANS decoder, in-place GDN, batched tiles, ``torch.compile``).
* ``cli``: wall time of ``imgcodec --help`` (and whether it imports torch), one image, many images
  in one call; the start-up imports.
* ``scaling``: seconds and peak memory (RSS of a fresh process) against megapixels.
* ``models``: encode and decode seconds per image of each architecture's shipped model at its
  default quality (one thread unless ``--threads``), alternated image by image, as a ratio against
  ``meanscale-gdn``; plain encoding (no refinement).
* ``train``: training throughput (steps/s and crops/s, fp32 and bf16) at the recipe's patch and batch size.
* ``runtimes``: the torch and the ONNX runtime (``imgcodec/light``) in one run on the same images:
  in-process encode and decode seconds of every shipped model at its default quality (alternated,
  the threads of the run for both), the command line's wall time to encode one image and to refuse
  a missing input with ``--runtime torch`` and ``--runtime onnx``, and — where
  ``$IMGCODEC_LIGHT_VENV`` names a virtual environment with the light install (``pip install .``,
  no torch) — that environment's size and its own ``imgcodec``'s wall times.
* ``kernels``: each distinct stride-2 transposed convolution of the shipped synthesis transforms, at
  the size it runs at for the largest image, alone: torch's (oneDNN, channels-last, as the torch
  runtime runs it), ONNX Runtime's ``ConvTranspose`` (as the shipped graphs run it) and ONNX
  Runtime's convolution on the same layer in its phase form (``export.SubPixelConvTranspose``),
  alternated; achieved GFLOP/s and each ONNX form against torch, after checking that all three
  compute the same output.

Timings are medians; with other work on the machine only the ratios measured in one run mean much.
Each section imports torch, the codec and its peers inside its own function (deferred on purpose):
the scaling section's child processes and a run of a few sections load only what they time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SECTIONS = ("peer", "split", "flops", "techniques", "cli", "scaling", "models", "train", "runtimes", "kernels")
DEFAULT_SCALING_MP = (0.1, 0.5, 1, 2, 4, 8, 16, 24)


@dataclass
class BenchOptions:
    data: Path | None = None  # images (default: the bundled sample)
    limit: int | None = None
    qualities: list[int] | None = None  # default: the model's default and its highest shipped
    model: str | None = None
    reps: int = 3
    warmup: int = 1
    threads: int | None = None  # torch intra-op threads (default: torch's)
    sections: tuple[str, ...] = SECTIONS
    scaling_mp: tuple[float, ...] = DEFAULT_SCALING_MP
    cli_images: int = 24
    train_steps: int = 8
    train_data: Path | None = None
    compile: bool = True  # time torch.compile in `techniques` (tens of seconds)
    clock: str | None = None  # "cpu" or "wall" (default: cpu with one torch thread, else wall)


# The clock of the medians, which ``run`` picks and hands to every section: "cpu" (this process's
# CPU seconds: robust where other work shares the cores, and the time an idle core would take when
# torch runs one thread) or "wall".
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _median_time(fn: Callable[[], object], reps: int, warmup: int = 1, clock: str = "wall") -> float:
    now = _CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(reps, 1)):
        t0 = now()
        fn()
        times.append(now() - t0)
    return statistics.median(times)


def _alternate(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of each function, the functions taking turns (so that drift in
    the machine's load hits all alike)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(max(reps, 1)):
        for n in names if r % 2 == 0 else names[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            fns[n]()
            times[n]["cpu"].append(time.process_time() - c0)
            times[n]["wall"].append(time.perf_counter() - w0)
    return {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Images and models


def load_images(opts: BenchOptions) -> list[tuple[str, np.ndarray]]:
    from ..eval.evaluate import load_images as load
    from ..models.store import repo_root

    folder = Path(opts.data) if opts.data else repo_root() / "data"
    return [(im.name, im.rgb) for im in load(folder, opts.limit)]


# The model the sections without one of their own measure: the peer is compressai's FactorizedPrior.
PEER_MODEL = "factorized-gdn"


def bench_qualities(opts: BenchOptions) -> tuple[str, list[int]]:
    from ..models import store

    name = opts.model or PEER_MODEL
    if opts.qualities:
        return name, list(dict.fromkeys(opts.qualities))
    home = store.default_store()
    config = home.load_config(name)
    shipped = home.shipped_qualities(name)
    qs = [config.default_quality] + ([max(shipped)] if shipped else [])
    return name, list(dict.fromkeys(qs))


def compressai_peer(loaded):
    """compressai's own FactorizedPrior(N, M) holding exactly our weights and entropy tables."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.models import FactorizedPrior
    cfg = loaded.config
    if cfg.architecture != "factorized" or cfg.norm != "gdn":
        raise ValueError(f"compressai's FactorizedPrior has no counterpart of {cfg.name!r} ({cfg.architecture}, {cfg.norm})")
    peer = FactorizedPrior(cfg.N, cfg.M)
    peer.load_state_dict(loaded.model.state_dict(), strict=True)  # the same names: g_a, g_s, GDN's reparametrizers
    return peer.eval()


# ---------------------------------------------------------------------------------------------
# Section: against compressai


def _peer_encode(peer, rgb: np.ndarray):
    """compressai's pipeline: an NCHW float tensor (as ToTensor gives it), padded, ``.compress``."""
    import torch

    from ..codec.tensors import array_to_tensor, pad_image, padded_size

    with torch.no_grad():
        x = array_to_tensor(rgb).contiguous()
        x = pad_image(x, *padded_size(rgb.shape[0], rgb.shape[1], 16))
        return peer.compress(x)


def _peer_decode(peer, out, h: int, w: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        x_hat = peer.decompress(out["strings"], out["shape"])["x_hat"][..., :h, :w]
        return x_hat[0].mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def peer_section(images, loaded, reps: int, warmup: int, log, clock: str = "wall") -> dict:
    from ..codec import api as codec
    from ..codec.imageio import CanonicalImage
    from ..format import bitstream, rans
    from ..models import compressai_parts

    peer = compressai_peer(loaded)
    eb = loaded.model.entropy_bottleneck
    tables = compressai_parts.coder_tables(eb)
    rows, per = [], []
    for name, rgb in images:
        h, w = rgb.shape[:2]
        img = CanonicalImage(rgb, None, False)
        ours_file = codec.encode_canonical(img, loaded)
        theirs = _peer_encode(peer, rgb)
        t = _alternate({
            "ours_enc": lambda: codec.encode_canonical(img, loaded),
            "peer_enc": lambda: _peer_encode(peer, rgb),
            "ours_dec": lambda: codec.decode(ours_file, loaded=loaded),
            "peer_dec": lambda: _peer_decode(peer, theirs, h, w),
        }, reps, warmup)
        # Identity: our latent symbols against compressai's, and both decoders on compressai's payload.
        ours_payload = bitstream.unpack(ours_file).parts[0]
        peer_payload = theirs["strings"][0][0]
        plane = int(np.prod(theirs["shape"]))
        a = rans.decode_symbols(ours_payload, tables, plane)
        b = rans.decode_symbols(peer_payload, tables, plane)
        sym_diff = int(np.count_nonzero(a != b))
        ours_px = codec.decompress_latents(loaded.model, [peer_payload], h, w)
        peer_px = _peer_decode(peer, theirs, h, w)
        px_diff = np.abs(ours_px.astype(np.int16) - peer_px.astype(np.int16))
        r = {
            "image": name, "pixels": h * w, "bytes": len(ours_file),
            **{k: v[clock] for k, v in t.items()}, **{f"{k}_{c}": v[c] for k, v in t.items() for c in v},
            "same_payload": ours_payload == peer_payload, "symbols": a.size, "symbols_differing": sym_diff,
            "max_symbol_diff": int(np.abs(a - b).max()) if sym_diff else 0,
            "pixels_differing": int(np.count_nonzero(px_diff)), "max_pixel_diff": int(px_diff.max()),
        }
        per.append(r)
        rows.append([name, r["ours_enc"], r["peer_enc"], r["peer_enc"] / r["ours_enc"], r["ours_dec"], r["peer_dec"],
                     r["peer_dec"] / r["ours_dec"], f"{sym_diff}/{a.size}",
                     f"{r['pixels_differing']} (max {r['max_pixel_diff']})"])
        log(f"  {name}: encode {r['ours_enc']:.3f} s vs {r['peer_enc']:.3f} s, "
            f"decode {r['ours_dec']:.3f} s vs {r['peer_dec']:.3f} s ({clock})")
    tot = {k: sum(r[k] for r in per) for k in ("ours_enc", "peer_enc", "ours_dec", "peer_dec")}
    other = "wall" if clock == "cpu" else "cpu"
    tot2 = {k: sum(r[f"{k}_{other}"] for r in per) for k in ("ours_enc", "peer_enc", "ours_dec", "peer_dec")}
    n = len(per)
    summary = {
        "images": n, "clock": clock,
        f"encode_speedup_{other}": tot2["peer_enc"] / tot2["ours_enc"],
        f"decode_speedup_{other}": tot2["peer_dec"] / tot2["ours_dec"],
        f"encode_s_{other}": tot2["ours_enc"] / n, f"peer_encode_s_{other}": tot2["peer_enc"] / n,
        f"decode_s_{other}": tot2["ours_dec"] / n, f"peer_decode_s_{other}": tot2["peer_dec"] / n,
        "encode_s": tot["ours_enc"] / n, "peer_encode_s": tot["peer_enc"] / n,
        "decode_s": tot["ours_dec"] / n, "peer_decode_s": tot["peer_dec"] / n,
        "encode_speedup": tot["peer_enc"] / tot["ours_enc"], "decode_speedup": tot["peer_dec"] / tot["ours_dec"],
        "identical_payloads": sum(r["same_payload"] for r in per),
        "symbols_differing": sum(r["symbols_differing"] for r in per), "symbols": sum(r["symbols"] for r in per),
        "max_symbol_diff": max(r["max_symbol_diff"] for r in per),
        "pixels_differing": sum(r["pixels_differing"] for r in per), "pixels": sum(r["pixels"] for r in per) * 3,
        "max_pixel_diff": max(r["max_pixel_diff"] for r in per),
    }
    log(_table(["image", "encode s", "compressai", "×", "decode s", "compressai", "×", "symbols ≠",
                "pixels ≠ (same payload)"], rows))
    log(f"mean per image ({clock} seconds): encode {summary['encode_s']:.3f} s vs compressai {summary['peer_encode_s']:.3f} s "
        f"(×{summary['encode_speedup']:.2f}); decode {summary['decode_s']:.3f} s vs {summary['peer_decode_s']:.3f} s "
        f"(×{summary['decode_speedup']:.2f}); identical payloads {summary['identical_payloads']}/{n}, "
        f"symbols differing {summary['symbols_differing']}/{summary['symbols']}, "
        f"decoded values differing {summary['pixels_differing']}/{summary['pixels']} (max {summary['max_pixel_diff']})")
    log(f"in {other} seconds: encode ×{summary[f'encode_speedup_{other}']:.2f}, decode ×{summary[f'decode_speedup_{other}']:.2f}")
    return {"summary": summary, "images": per}


# ---------------------------------------------------------------------------------------------
# Section: where the time goes


def split_section(images, paths, loaded, reps: int, log, clock: str = "wall") -> dict:
    import io

    import torch

    from ..codec import tiling
    from ..codec.imageio import image_bytes, read_image, to_pil
    from ..format import bitstream
    from ..models import compressai_parts, store

    model = loaded.model
    eb = model.entropy_bottleneck
    stages: dict[str, list[float]] = {}

    def add(stage, fn):
        stages.setdefault(stage, []).append(_median_time(fn, reps, clock=clock))

    for (name, rgb), path in zip(images, paths):
        h, w = rgb.shape[:2]
        with torch.inference_mode():
            y = tiling.analysis(model, rgb)
            payload = eb.compress(y)[0]
            shape = tuple(y.shape[-2:])
            y_hat = compressai_parts.decode_factorized(eb, payload, shape)
            out = tiling.synthesis(model, y_hat, h, w)
            add("image read (PNG → RGB)", lambda: read_image(path) if path else None)
            add("analysis transform g_a", lambda: tiling.analysis(model, rgb))
            add("entropy encode", lambda: eb.compress(y))
            hdr = bitstream.Header(model=loaded.config.name, weights=bytes(8), quality=loaded.config.stored(loaded.quality),
                                   width=w, height=h, mode="RGB")
            add("container + CRC (pack)", lambda: bitstream.pack(hdr, [payload]))
            data = bitstream.pack(hdr, [payload])
            add("container + CRC (unpack)", lambda: bitstream.unpack(data))
            add("entropy decode (checked)", lambda: compressai_parts.decode_factorized(eb, payload, shape))
            add("synthesis transform g_s", lambda: tiling.synthesis(model, y_hat, h, w))
            img = to_pil(out, None, False)
            add("image write (RGB → PNG)", lambda: image_bytes(img, Path("x.png")))
            add("image write, PNG compress_level=1 (not shipped)", lambda: img.save(io.BytesIO(), format="PNG", compress_level=1))
    home = store.default_store()
    entry = home.manifest_entry(loaded.config.name, loaded.quality)
    path = home.checkpoints / entry["file"] if entry else None
    load_s = _median_time(lambda: store.load_checkpoint_file(path, entry["sha256"]), reps, clock=clock) if path else float("nan")
    res = {k: statistics.mean(v) for k, v in stages.items()}
    res["model load (sha256 + safetensors + build), once per process"] = load_s
    enc = sum(v for k, v in res.items() if k in ("analysis transform g_a", "entropy encode", "container + CRC (pack)"))
    decoding = ("entropy decode (checked)", "synthesis transform g_s", "container + CRC (unpack)")
    dec = sum(v for k, v in res.items() if k in decoding)
    rows = []
    for k, v in res.items():
        share = ""
        if k in ("analysis transform g_a", "entropy encode", "container + CRC (pack)"):
            share = f"{100 * v / enc:.0f}% of encode"
        elif k in ("entropy decode (checked)", "synthesis transform g_s", "container + CRC (unpack)"):
            share = f"{100 * v / dec:.0f}% of decode"
        rows.append([k, v * 1e3, share])
    log(_table(["stage (mean per image)", "ms", "share"], rows))
    return {k: v for k, v in res.items()}


# ---------------------------------------------------------------------------------------------
# Section: FLOPs


def conv_flops(model, shape: tuple[int, int], net: str) -> tuple[float, list]:
    """FLOPs (2 per multiply-add) of the convolutions of ``g_a`` (on an image of ``shape``) or
    ``g_s`` (on its latent), GDN's 1×1 convolutions included, counted with forward hooks."""
    import torch
    from torch import nn

    total, layers = 0.0, []
    hooks = []

    def hook(m, inp, out):
        nonlocal total
        x = inp[0]
        if isinstance(m, nn.ConvTranspose2d):
            f = 2.0 * x.shape[1] * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * x.shape[2] * x.shape[3] / m.groups
        elif isinstance(m, nn.Conv2d):
            f = 2.0 * out.shape[1] * x.shape[1] * m.kernel_size[0] * m.kernel_size[1] * out.shape[2] * out.shape[3] / m.groups
        else:  # GDN: a 1×1 convolution C → C on x²
            f = 2.0 * x.shape[1] * x.shape[1] * x.shape[2] * x.shape[3]
        total += f
        layers.append((type(m).__name__, tuple(x.shape), f))

    seq = getattr(model, net)
    for m in seq:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) or type(m).__name__ == "GDN":
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            if net == "g_a":
                seq(torch.zeros(1, 3, *shape))
            else:
                seq(torch.zeros(1, model.config.M, shape[0] // 16, shape[1] // 16))
    finally:
        for h in hooks:
            h.remove()
    return total, layers


def flops_section(loaded, shape, reps: int, log, clock: str = "wall") -> dict:
    import torch

    from ..codec import fastpath
    from ..codec.fastpath import fast_layout

    model = loaded.model
    res = {}
    x = torch.rand(1, 3, *shape)
    with torch.inference_mode():
        y_hat = torch.round(model.g_a(fast_layout(x)) * 0)  # zeros: the FLOPs do not depend on the values
        for net, inp in (("g_a", x), ("g_s", y_hat)):
            f, _ = conv_flops(model, shape, net)
            seq = getattr(model, net)
            t_cl = _median_time(lambda: fastpath.run(seq, inp), reps, clock=clock)
            t_nchw = _median_time(lambda: seq(inp.contiguous()), reps, clock=clock)
            res[net] = {"gflop": f / 1e9, "s_channels_last": t_cl, "s_nchw": t_nchw,
                        # channels-last: the shipped path
                        "gflops_channels_last": f / t_cl / 1e9, "gflops_nchw": f / t_nchw / 1e9}
        conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
        big = fast_layout(torch.rand(1, 128, 128, 128))
        f_conv = 2.0 * 128 * 128 * 9 * 128 * 128
        t = _median_time(lambda: conv(big), reps, clock=clock)
        res["plain conv 128→128 3×3 on 128×128, channels-last"] = {"gflops": f_conv / t / 1e9}
        a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
        t = _median_time(lambda: a @ b, reps, clock=clock)
        res["matrix product 2048×2048"] = {"gflops": 2.0 * 2048**3 / t / 1e9}
    peak = max(res["plain conv 128→128 3×3 on 128×128, channels-last"]["gflops"], res["matrix product 2048×2048"]["gflops"])
    rows = []
    for net in ("g_a", "g_s"):
        r = res[net]
        rows.append([net, r["gflop"], r["s_nchw"] * 1e3, r["gflops_nchw"], r["s_channels_last"] * 1e3,
                     r["gflops_channels_last"], f"{100 * r['gflops_channels_last'] / peak:.0f}%"])
    log(f"transforms on {shape[1]}×{shape[0]} (threads {torch.get_num_threads()}):")
    log(_table(["transform", "GFLOP", "NCHW ms", "NCHW GFLOP/s", "channels-last ms", "GFLOP/s", "of practical peak"], rows))
    log(f"practical peak: plain convolution {res['plain conv 128→128 3×3 on 128×128, channels-last']['gflops']:.1f} GFLOP/s, "
        f"matrix product {res['matrix product 2048×2048']['gflops']:.1f} GFLOP/s")
    res["peak_gflops"] = peak
    return res


# ---------------------------------------------------------------------------------------------
# Section: techniques one by one


def _gdn_inplace(gdn, x):
    """GDN/IGDN with the normalisation computed in place (one temporary less): the same numbers."""
    import torch.nn.functional as F

    c = x.shape[1]
    norm = F.conv2d(x * x, gdn.gamma_reparam(gdn.gamma).reshape(c, c, 1, 1), gdn.beta_reparam(gdn.beta))
    norm = norm.sqrt_() if gdn.inverse else norm.rsqrt_()
    return norm.mul_(x)


def techniques_section(loaded, rgb: np.ndarray, reps: int, log, jit_load_s: float = float("nan"),
                       compile: bool = True, clock: str = "wall") -> dict:
    import torch

    from ..codec import fastpath, tensors
    from ..format import rans, rans_jit
    from ..models import compressai_parts

    model = loaded.model
    h, w = rgb.shape[:2]
    res: dict[str, dict] = {}
    x = tensors.pad_image(tensors.array_to_tensor(rgb).contiguous(), *tensors.padded_size(h, w, 16))
    with torch.inference_mode():
        y_hat = torch.round(model.g_a(x))
    xcl, ycl = fastpath.fast_layout(x), fastpath.fast_layout(y_hat)

    def transforms(mode_x, mode_y, ctx):
        def run():
            with ctx():
                model.g_a(mode_x)
                model.g_s(mode_y)
        return run

    def shipped():
        with torch.inference_mode():
            fastpath.run(model.g_a, x)
            fastpath.run(model.g_s, y_hat)

    # The (1, C, H, W) view of an (H, W, C) array: channels-last in memory, but its batch stride
    # makes torch read it as NCHW (see fastpath.py), so every layer runs NCHW.
    n_, c_, h_, w_ = xcl.shape
    view_of_array = xcl.as_strided(xcl.shape, (c_, 1, w_ * c_, c_))
    from compressai.layers import GDN

    def inplace_gdn():  # the whole tensor at once, in place (one temporary less)
        with torch.inference_mode():
            for seq, inp in ((model.g_a, xcl), (model.g_s, ycl)):
                a = inp
                for m in seq:
                    a = _gdn_inplace(m, a) if isinstance(m, GDN) else m(a)

    import copy

    wcl = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def weights_cl():
        with torch.inference_mode():
            fastpath.run(wcl.g_a, x)
            fastpath.run(wcl.g_s, y_hat)

    def no_onednn():
        prev = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            transforms(xcl, ycl, torch.inference_mode)()
        finally:
            torch.backends.mkldnn.enabled = prev

    # All the variants take turns within each repetition: load drift hits them alike.
    variants = {
        "baseline: NCHW, no_grad": transforms(x, y_hat, torch.no_grad),
        "inference_mode, NCHW": transforms(x, y_hat, torch.inference_mode),
        "+ g_a input: the HWC array's view as it comes (read as NCHW)": transforms(view_of_array, ycl, torch.inference_mode),
        "+ channels-last, canonical strides": transforms(xcl, ycl, torch.inference_mode),
        "+ banded GDN (fastpath.run: shipped)": shipped,
        "channels-last + whole-tensor in-place GDN (not shipped)": inplace_gdn,
        "shipped + weights channels-last (not shipped)": weights_cl,
        "channels-last, oneDNN disabled": no_onednn,
    }
    t = {k: v[clock] for k, v in _alternate(variants, reps).items()}
    base = t["baseline: NCHW, no_grad"]
    for k, v in t.items():
        res[k] = {"s": v, "speedup": base / v}
    # threads (wall clock: CPU seconds of two threads would count both)
    n0 = torch.get_num_threads()
    walls = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        try:
            walls[n] = _median_time(transforms(xcl, ycl, torch.inference_mode), reps, clock="wall")
        finally:
            torch.set_num_threads(n0)
    for n, v in walls.items():
        res[f"channels-last, {n} thread(s), wall clock"] = {"s": v, "speedup": walls[1] / v}
    # entropy decoding: compressai's native decoder (unchecked), our Python loop, our compiled loop
    eb = model.entropy_bottleneck
    with torch.inference_mode():
        y = model.g_a(xcl)
    payload = eb.compress(y)[0]
    shape = tuple(y.shape[-2:])
    tables = compressai_parts.coder_tables(eb)
    plane = shape[0] * shape[1]
    t_native = _median_time(lambda: eb.decompress([payload], shape), reps, clock=clock)
    t_py = _median_time(lambda: rans.decode_symbols(payload, tables, plane, decoder="python"), reps, clock=clock)
    rans_jit.load()
    t_jit = _median_time(lambda: rans.decode_symbols(payload, tables, plane, decoder="jit"), reps, clock=clock)
    res["entropy decode: compressai native (unchecked)"] = {"s": t_native}
    res["entropy decode: checked, Python loop"] = {"s": t_py}
    res["entropy decode: checked, numba (shipped)"] = {"s": t_jit, "import_and_load_s": jit_load_s}
    # batched tiles: four 512×512 tiles one by one or as one batch of 4 (g_s)
    with torch.inference_mode():
        tiles = fastpath.fast_layout(torch.round(torch.randn(4, model.config.M, 36, 36) * 2))
        g_s = model.g_s
        t = {k: v[clock] for k, v in _alternate({
            "one by one": lambda: [fastpath.run(g_s, tiles[i : i + 1]) for i in range(4)],
            "one batch": lambda: fastpath.run(g_s, tiles),
        }, reps).items()}
    res["g_s on 4 tiles of 576 px: one by one"] = {"s": t["one by one"]}
    res["g_s on 4 tiles of 576 px: one batch of 4"] = {"s": t["one batch"], "speedup": t["one by one"] / t["one batch"]}
    # torch.compile: the compile time against the saving per image (CLI scale: one or a few images)
    try:
        if not compile:
            raise RuntimeError("skipped (--no-compile)")
        compiled = torch.compile(model.g_s)
        with torch.inference_mode():
            t0 = time.perf_counter()
            compiled(ycl)
            t_compile = time.perf_counter() - t0
            t_c = _median_time(lambda: compiled(ycl), reps, clock=clock)
            t_e = _median_time(lambda: model.g_s(ycl), reps, clock=clock)
        res["torch.compile g_s"] = {"first_call_s": t_compile, "s": t_c, "eager_s": t_e, "speedup": t_e / t_c}
    except Exception as exc:  # noqa: BLE001 - no compiler toolchain: say so
        res["torch.compile g_s"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
    rows = []
    for k, v in res.items():
        rows.append([k, v.get("s", float("nan")) * 1e3 if "s" in v else "", f"×{v['speedup']:.2f}" if "speedup" in v else "",
                     ", ".join(f"{a} {b:.3g}" if isinstance(b, float) else f"{a} {b}"
                               for a, b in v.items() if a not in ("s", "speedup"))])
    log(f"on {w}×{h}, {clock} seconds (transforms: g_a + g_s; speed-ups against the first row; threads: against 1 thread):")
    log(_table(["technique", "ms", "speed-up", "notes"], rows))
    return res


# ---------------------------------------------------------------------------------------------
# Section: command line


def _run_timed(cmd: list[str], env: dict | None = None, check: bool = True) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one command in a fresh process (``check``: a
    non-zero exit is an error)."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(proc.pid, 0)  # the child's own rusage
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if proc.returncode and check:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode(errors='replace')[-400:]}")
    return wall, ru.ru_utime + ru.ru_stime, out.decode(errors="replace")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgcodec.cli", *args]


def cli_section(paths: list[Path], n_images: int, reps: int, log, threads: int | None = None) -> dict:
    """Fresh processes, as a user runs them (with OMP_NUM_THREADS=threads if given)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)

    def timed(cmd):
        return _run_timed(cmd, env)

    res: dict[str, dict] = {}
    helps = [timed(_cli("--help")) for _ in range(max(reps, 3))]
    probe = ("import sys, runpy; sys.argv = ['imgcodec', '--help']\n"
             "try:\n    runpy.run_module('imgcodec.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')")
    torch_loaded = timed([sys.executable, "-c", probe])[2].split()[-1] == "TORCH"
    res["imgcodec --help"] = {"s": statistics.median(h[0] for h in helps), "cpu_s": statistics.median(h[1] for h in helps),
                              "imports_torch": torch_loaded}
    if n_images < 1 or not paths:  # the quick form: --help alone
        log(f"imgcodec --help: {res['imgcodec --help']['s']:.3f} s ({res['imgcodec --help']['cpu_s']:.3f} CPU s), "
            f"imports torch: {torch_loaded}")
        return res
    imports = {}
    for mod in ("torch", "compressai", "imgcodec.codec.api", "numba"):
        runs = [timed([sys.executable, "-c", f"import {mod}"]) for _ in range(2)]
        imports[mod] = {"s": min(r[0] for r in runs), "cpu_s": min(r[1] for r in runs)}
    res["python -c 'import …' (start-up)"] = imports
    paths = list(paths)
    many = (paths * (-(-n_images // max(len(paths), 1))))[:n_images] if paths else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = paths[0]
        enc = [timed(_cli("encode", str(one), str(tmp / "one.bin"), "-f")) for _ in range(2)]
        dec = [timed(_cli("decode", str(tmp / "one.bin"), str(tmp / "one.png"), "-f")) for _ in range(2)]
        res["encode one image"] = {"s": min(e[0] for e in enc), "cpu_s": min(e[1] for e in enc)}
        res["decode one image"] = {"s": min(d[0] for d in dec), "cpu_s": min(d[1] for d in dec)}
        # refusals: a missing and a corrupt input, reported before torch is imported
        corrupt = tmp / "corrupt.png"
        corrupt.write_bytes(Path(one).read_bytes()[:64])
        for label, bad in (("refuse a missing input", tmp / "missing.png"), ("refuse a corrupt input", corrupt)):
            runs = [_run_timed(_cli("encode", str(bad), str(tmp / "refused.bin")), env, check=False) for _ in range(2)]
            res[label] = {"s": min(r[0] for r in runs), "cpu_s": min(r[1] for r in runs)}
        # n images in one call (links so that names differ when the set is repeated)
        src = tmp / "src"
        src.mkdir()
        for i, p in enumerate(many):
            (src / f"{i:03d}{p.suffix}").symlink_to(Path(p).resolve())
        inputs = sorted(str(p) for p in src.iterdir())
        e = timed(_cli("encode", *inputs, "-o", str(tmp / "bins"), "-f"))
        bins = sorted(str(p) for p in (tmp / "bins").iterdir())
        d = timed(_cli("decode", *bins, "-o", str(tmp / "pngs"), "-f"))
        res[f"encode {len(many)} images in one call"] = {"s": e[0], "cpu_s": e[1], "s_per_image": e[0] / len(many)}
        res[f"decode {len(many)} images in one call"] = {"s": d[0], "cpu_s": d[1], "s_per_image": d[0] / len(many)}
    rows = [[k, v.get("s", ""), v.get("cpu_s", ""), v.get("s_per_image", "")] for k, v in res.items() if "s" in v]
    log(_table(["command", "wall s", "CPU s", "wall s per image"], rows))
    log(f"imgcodec --help imports torch: {torch_loaded}; start-up imports (wall s / CPU s): "
        + ", ".join(f"{k} {v['s']:.2f} / {v['cpu_s']:.2f}" for k, v in imports.items()))
    log(f"command line, wall s: encode one image {res['encode one image']['s']:.2f}, refuse a missing input "
        f"{res['refuse a missing input']['s']:.2f}, refuse a corrupt input {res['refuse a corrupt input']['s']:.2f}; "
        f"`import compressai` alone {imports['compressai']['s']:.2f}")
    return res


# ---------------------------------------------------------------------------------------------
# Section: scaling (each size in a fresh process, for its peak RSS)


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux ≥ 4.0), so that the peak
    measured next is the coding's, not the imports'."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    import resource

    return _proc_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _scaling_child(mp: float, source: str, model: str | None, quality: int | None) -> dict:
    import torch

    from ..codec import api as codec
    from ..codec.imageio import CanonicalImage, load_rgb_array
    from ..format import rans_jit
    from ..models import store

    base = load_rgb_array(Path(source))
    side_w = int(round((mp * 1e6 * 1.5) ** 0.5))
    side_h = int(round(mp * 1e6 / side_w))
    reps_h, reps_w = -(-side_h // base.shape[0]), -(-side_w // base.shape[1])
    tile = np.concatenate([base, base[::-1]], axis=0)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    rgb = np.ascontiguousarray(np.tile(tile, (-(-reps_h // 2), -(-reps_w // 2), 1))[:side_h, :side_w])
    del tile
    loaded = store.default_store().load_shipped(model, quality)
    rans_jit.load()
    small = CanonicalImage(rgb[:64, :64].copy(), None, False)
    codec.decode(codec.encode_canonical(small, loaded), loaded=loaded)  # warm-up
    rss_imports = _peak_rss()
    reset = _reset_peak_rss()
    rss0 = _proc_status("VmRSS") or rss_imports
    img = CanonicalImage(rgb, None, False)
    t0, c0 = time.perf_counter(), time.process_time()
    data = codec.encode_canonical(img, loaded)
    t1, c1 = time.perf_counter(), time.process_time()
    rss_enc = _peak_rss()
    codec.decode(data, loaded=loaded, max_pixels=None)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"mp": side_w * side_h / 1e6, "width": side_w, "height": side_h, "encode_s": t1 - t0, "decode_s": t2 - t1,
            "encode_cpu_s": c1 - c0, "decode_cpu_s": c2 - c1,
            "rss_before_bytes": rss0, "rss_peak_encode_bytes": rss_enc, "rss_after_imports_peak_bytes": rss_imports,
            "rss_peak_bytes": _peak_rss(), "peak_reset": reset,
            "threads": torch.get_num_threads(), "bytes": len(data), "model": loaded.config.name,
            "quality": loaded.quality}


def scaling_section(sizes, source: Path, model, quality, threads, log, clock: str = "wall") -> dict:
    """Each size in a fresh process (its own peak RSS); times in the clock of the run (CPU seconds
    of that process with one thread)."""
    rows, out = [], []
    sfx = "_cpu_s" if clock == "cpu" else "_s"
    for mp in sizes:
        args = [sys.executable, "-m", "imgcodec.studies.bench", "--scaling-child", str(mp), str(source),
                model or "", str(quality or "")]
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        _, _, stdout = _run_timed(args, env)
        r = json.loads(stdout.strip().splitlines()[-1])
        out.append(r)
        mib = 1 << 20
        enc, dec = r["encode" + sfx], r["decode" + sfx]
        rows.append([f"{r['mp']:.2f}", f"{r['width']}×{r['height']}", enc, dec,
                     enc / r["mp"], dec / r["mp"], r["rss_before_bytes"] / mib,
                     r["rss_peak_bytes"] / mib, (r["rss_peak_bytes"] - r["rss_before_bytes"]) / mib])
        log(f"  {r['mp']:.2f} MP: encode {enc:.2f} s, decode {dec:.2f} s ({clock}), peak RSS {r['rss_peak_bytes'] / mib:.0f} MiB")
    log(_table(["MP", "size", "encode s", "decode s", "encode s/MP", "decode s/MP", "RSS before MiB", "peak RSS MiB",
                "peak − before MiB"], rows))
    if len(out) >= 2:
        mp = np.array([r["mp"] for r in out])
        for key in ("encode" + sfx, "decode" + sfx):
            t = np.array([r[key] for r in out])
            slope, icept = np.polyfit(mp, t, 1)
            fit = slope * mp + icept
            r2 = 1 - float(((t - fit) ** 2).sum()) / max(float(((t - t.mean()) ** 2).sum()), 1e-12)
            log(f"{key}: {slope:.3f} s/MP + {icept:.3f} s, R² = {r2:.4f}")
    return {"points": out}


# ---------------------------------------------------------------------------------------------
# Section: training throughput



def models_section(images, reps: int, warmup: int, log, clock: str = "wall") -> dict:
    """Encode and decode seconds per image of every shipped model with GDN (one per architecture and
    the wider ones), alternated image by image, and each one's ratio to the default model."""
    from ..codec import api as codec
    from ..codec.imageio import CanonicalImage
    from ..models import store

    home = store.default_store()
    reference = store.DEFAULT_MODEL
    names = [name for name, config in home.configs().items()
             if home.shipped_qualities(name) and config.norm == "gdn"]
    names = sorted(names, key=lambda n: (n != reference, n))
    loaded = {n: home.load_shipped(n) for n in names}
    totals = {n: {"encode": 0.0, "decode": 0.0, "bytes": 0} for n in names}
    for _, rgb in images:
        img = CanonicalImage(rgb, None, False)
        files = {n: codec.encode_canonical(img, loaded[n]) for n in names}
        fns = {}
        for n in names:
            fns[f"{n} encode"] = lambda n=n: codec.encode_canonical(img, loaded[n])
            fns[f"{n} decode"] = lambda n=n: codec.decode(files[n], loaded=loaded[n])
        t = _alternate(fns, reps, warmup)
        for n in names:
            totals[n]["encode"] += t[f"{n} encode"][clock] / len(images)
            totals[n]["decode"] += t[f"{n} decode"][clock] / len(images)
            totals[n]["bytes"] += len(files[n])
    ref = totals.get(reference)
    rows = []
    for n in names:
        r = totals[n]
        if ref:
            r["encode_ratio"], r["decode_ratio"] = r["encode"] / ref["encode"], r["decode"] / ref["decode"]
        rows.append([n, loaded[n].model.config.architecture, r["bytes"], r["encode"], r.get("encode_ratio", float("nan")),
                     r["decode"], r.get("decode_ratio", float("nan"))])
    log(_table(["model", "architecture", "bytes", "encode s", f"× {reference}", "decode s", f"× {reference}"], rows))
    return totals


def runtimes_section(images, paths: list[Path], reps: int, warmup: int, log, clock: str = "wall") -> dict:
    """The torch and the ONNX runtime on the same images: in-process encode and decode of every
    shipped model (default quality), command-line wall times, the light install's size."""
    import torch

    from ..codec import api as codec
    from ..codec.imageio import CanonicalImage
    from ..light import codec as light
    from ..light.store import LightStore
    from ..models import store

    home = store.default_store()
    lights = LightStore(home.cached(), threads=torch.get_num_threads())  # ONNX Runtime and OpenBLAS at torch's threads
    names = sorted(n for n in home.configs() if home.shipped_qualities(n))
    res: dict = {"threads": torch.get_num_threads(), "models": {}}
    rows = []
    for n in names:
        loaded = home.load_shipped(n)
        lm, q = lights.load(n, None)
        total = {"torch encode": 0.0, "onnx encode": 0.0, "torch decode": 0.0, "onnx decode": 0.0}
        for _, rgb in images:
            img = CanonicalImage(rgb, None, False)
            files = {"torch": codec.encode_canonical(img, loaded), "onnx": light.encode_canonical(img, lm, q)}
            t = _alternate({"torch encode": lambda: codec.encode_canonical(img, loaded),
                            "onnx encode": lambda: light.encode_canonical(img, lm, q),
                            "torch decode": lambda: codec.decode(files["onnx"], loaded=loaded),
                            "onnx decode": lambda: light.decode(files["torch"], store=lights)}, reps, warmup)
            for k in total:
                total[k] += t[k][clock] / len(images)
        res["models"][n] = total
        rows.append([n, q, total["torch encode"], total["onnx encode"], total["onnx encode"] / total["torch encode"],
                     total["torch decode"], total["onnx decode"], total["onnx decode"] / total["torch decode"]])
    log(_table(["model", "quality", "torch encode s", "onnx encode s", "onnx/torch", "torch decode s",
                "onnx decode s", "onnx/torch"], rows))
    if not paths:
        return res
    one = paths[0]
    cli = {}
    venv = os.environ.get("IMGCODEC_LIGHT_VENV")
    runs = [("torch", [sys.executable, "-m", "imgcodec.cli"], ["--runtime", "torch"]),
            ("onnx", [sys.executable, "-m", "imgcodec.cli"], ["--runtime", "onnx"])]
    if venv:
        runs.append(("onnx, light install", [str(Path(venv) / "bin" / "imgcodec")], []))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, exe, flags in runs:
            enc = [_run_timed(exe + ["encode", str(one), str(tmp / "one.bin"), "-f", *flags]) for _ in range(max(reps, 2))]
            dec = [_run_timed(exe + ["decode", str(tmp / "one.bin"), str(tmp / "one.png"), "-f", *flags])
                   for _ in range(max(reps, 2))]
            bad = [_run_timed(exe + ["encode", str(tmp / "missing.png"), str(tmp / "x.bin"), *flags], check=False)
                   for _ in range(max(reps, 2))]
            cli[label] = {"encode one image s": statistics.median(e[0] for e in enc),
                          "decode one image s": statistics.median(d[0] for d in dec),
                          "refuse a missing input s": statistics.median(b[0] for b in bad)}
    res["cli"] = cli
    log(_table(["command line (wall s, median)", "encode one image", "decode one image", "refuse a missing input"],
               [[k, v["encode one image s"], v["decode one image s"], v["refuse a missing input s"]]
                for k, v in cli.items()]))
    if venv:
        size = sum(p.stat().st_size for p in Path(venv).rglob("*") if p.is_file() and not p.is_symlink())
        res["light_venv_bytes"] = size
        log(f"light install ({venv}): {size / 2**20:.0f} MiB")
    return res


def _deconv_layers(home) -> dict[tuple, object]:
    """``{(in, out, kernel, stride, padding, output padding, input scale): layer}`` over the
    synthesis transforms of every shipped model (default quality): each distinct stride-2
    transposed convolution once, where input scale is the factor between the latent's side and
    the layer's input's."""
    from torch import nn

    layers = {}
    for name in sorted(n for n in home.configs() if home.shipped_qualities(n)):
        scale = 1
        for m in home.load_shipped(name).model.g_s.modules():
            if isinstance(m, nn.ConvTranspose2d) and m.stride[0] >= 2:
                key = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.output_padding[0])
                layers.setdefault(key + (scale,), m)
                scale *= m.stride[0]
    return layers


def kernels_section(images, reps: int, warmup: int, log, clock: str = "wall") -> dict:
    """Each distinct transposed convolution of the shipped synthesis transforms at the size the
    largest image gives it: torch against ONNX Runtime's two forms of it, one layer at a time."""
    import copy

    import onnxruntime as ort
    import torch

    from ..light.export import SubPixelConvTranspose, export_graph, subpixel_padding
    from ..light.models import open_session
    from ..models import store

    big = max(images, key=lambda im: im[1].shape[0] * im[1].shape[1])[1]
    latent = (-(-big.shape[0] // 16), -(-big.shape[1] // 16))
    res: dict = {"threads": torch.get_num_threads(), "onnxruntime": ort.__version__, "layers": []}
    rows = []
    for i, (key, layer) in enumerate(_deconv_layers(store.default_store()).items()):
        cin, cout, k, s, scale = *key[:4], key[-1]
        h, w = latent[0] * scale, latent[1] * scale
        x = torch.rand(1, cin, h, w, generator=torch.Generator().manual_seed(i))
        layer = copy.deepcopy(layer).eval()
        forms = {"onnx ConvTranspose": layer}
        if subpixel_padding(layer) is not None:
            forms["onnx phase Conv"] = SubPixelConvTranspose(layer)
        sessions = {label: open_session(export_graph(module, cin, 4), torch.get_num_threads())
                    for label, module in forms.items()}
        xs, xcl = x.numpy(), x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref = layer(xcl).numpy()
            fns = {"torch": lambda: layer(xcl)}
            fns.update({label: (lambda sess=sess: sess.run(None, {"x": xs})) for label, sess in sessions.items()})
            diff = max(float(np.abs(sess.run(None, {"x": xs})[0] - ref).max()) for sess in sessions.values())
            t = _alternate(fns, reps, warmup)
        flop = 2.0 * cin * cout * k * k * h * w
        r = {"in": cin, "out": cout, "kernel": k, "stride": s, "input": [h, w], "gflop": flop / 1e9,
             "max_abs_diff": diff, "seconds": {n: v[clock] for n, v in t.items()}}
        res["layers"].append(r)
        row = [f"{cin}→{cout} {k}×{k}/{s}", f"{h}×{w}", flop / 1e9, r["seconds"]["torch"] * 1e3,
               flop / 1e9 / r["seconds"]["torch"]]
        for label in ("onnx ConvTranspose", "onnx phase Conv"):
            sec = r["seconds"].get(label)
            row += [sec * 1e3, sec / r["seconds"]["torch"]] if sec else ["", ""]
        rows.append(row)
    log(_table(["layer", "input", "GFLOP", "torch ms", "torch GFLOP/s", "ConvTranspose ms", "/ torch",
                "phase Conv ms", "/ torch"], rows))
    return res


def train_section(data: Path, model: str | None, steps: int, threads: int | None, log, clock: str = "wall") -> dict:
    """Training steps and crops per second of ``imgcodec.train`` at the recipe's patch and batch,
    in fp32 and in bf16 (autocast, channels-last; emulated where the CPU lacks AMX and
    AVX512-BF16), and bf16's speed-up: ``steps`` steps timed after two untimed ones, on batches
    loaded beforehand (:func:`imgcodec.train.time_steps`), in the run's clock (CPU seconds of
    this process, or wall)."""
    from ..codec.api import DEFAULT_MODEL
    from ..models import store
    from ..train import TrainOptions, cpu_has_bf16, time_steps

    name = model or DEFAULT_MODEL
    config = store.default_store().load_config(name)
    recipe = config.training
    res = {"model": name, "batch_size": recipe.batch_size, "patch": recipe.patch, "steps": steps, "clock": clock,
           "cpu_bf16": cpu_has_bf16()}
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            d = time_steps(TrainOptions(model=name, data=Path(data), out=Path(tmp) / "run",
                                        quality=config.default_quality, threads=threads, precision=precision), steps)
        r = {"s_per_step": d[clock] / steps, "steps_per_s": steps / d[clock],
             "images_per_s": recipe.batch_size * steps / d[clock],
             "images_per_s_wall": recipe.batch_size * steps / d["wall"],
             "images_per_s_cpu": recipe.batch_size * steps / d["cpu"]}
        res[precision] = r
        log(f"training {name} {precision}: batch {recipe.batch_size} × {recipe.patch}², {r['s_per_step']:.3f} s/step "
            f"({clock}), {r['steps_per_s']:.2f} steps/s, {r['images_per_s']:.1f} crops/s "
            f"({r['images_per_s_wall']:.1f} by the wall clock, {r['images_per_s_cpu']:.1f} per CPU second)")
    res["images_per_s"] = res["fp32"]["images_per_s"]
    res["bf16_speedup"] = res["bf16"]["images_per_s"] / res["fp32"]["images_per_s"]
    log(f"bf16 / fp32: {res['bf16_speedup']:.2f}× the crops per second "
        f"({'AMX or AVX512-BF16 present' if res['cpu_bf16'] else 'no native bf16 on this CPU: emulated'})")
    return res


# ---------------------------------------------------------------------------------------------
# Driver


def machine() -> dict:
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "loadavg_at_start": load}


def run(opts: BenchOptions, log: Callable[[str], None] = print) -> dict:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    clock = opts.clock or ("cpu" if torch.get_num_threads() == 1 else "wall")
    from ..codec.imageio import find_images
    from ..format import rans_jit
    from ..models import store

    folder = Path(opts.data) if opts.data else store.repo_root() / "data"
    images = load_images(opts)
    paths = find_images(folder)[: len(images)]
    model, qualities = bench_qualities(opts)
    res = {"machine": machine(), "data": str(folder), "images": len(images), "model": model, "qualities": qualities,
           "reps": opts.reps, "warmup": opts.warmup, "clock": clock}
    log(f"imgcodec bench: {len(images)} image(s) from {folder}, model {model}, qualities {qualities}, "
        f"{torch.get_num_threads()} thread(s), {clock} clock, load average {res['machine']['loadavg_at_start']}")
    t_jit = time.perf_counter()
    rans_jit.load()  # its one-time cost is reported by `techniques` and `cli`, not in every median
    res["rans_jit_load_s"] = time.perf_counter() - t_jit
    home = store.default_store()
    first = home.load_shipped(model, qualities[0])
    if "peer" in opts.sections:
        res["peer"] = {}
        for q in qualities:
            log(f"\n## against compressai's FactorizedPrior, {model} q{q}")
            res["peer"][q] = peer_section(images, home.load_shipped(model, q), opts.reps, opts.warmup, log, clock)
    if "split" in opts.sections:
        log(f"\n## where the time goes ({model} q{qualities[0]})")
        res["split"] = split_section(images, paths, first, opts.reps, log, clock)
    big = max(images, key=lambda im: im[1].shape[0] * im[1].shape[1])[1]
    if "flops" in opts.sections:
        log("\n## achieved GFLOP/s")
        shape = (-(-big.shape[0] // 16) * 16, -(-big.shape[1] // 16) * 16)
        res["flops"] = flops_section(first, shape, opts.reps, log, clock)
    if "techniques" in opts.sections:
        log("\n## techniques, one by one")
        res["techniques"] = techniques_section(first, big, opts.reps, log, res["rans_jit_load_s"], opts.compile, clock)
    if "cli" in opts.sections:
        log("\n## command line")
        res["cli"] = cli_section(paths, opts.cli_images, opts.reps, log, opts.threads)
    if "scaling" in opts.sections:
        log("\n## scaling (fresh process per size)")
        res["scaling"] = scaling_section(opts.scaling_mp, paths[0], model, qualities[0], opts.threads, log, clock)
    if "models" in opts.sections:
        log(f"\n## the shipped models against the default, {store.DEFAULT_MODEL} (default qualities)")
        res["models"] = models_section(images, opts.reps, opts.warmup, log, clock)
    if "train" in opts.sections:
        log("\n## training throughput")
        res["train"] = train_section(Path(opts.train_data) if opts.train_data else folder, model,
                                     opts.train_steps, opts.threads, log, clock)
    if "runtimes" in opts.sections:
        log("\n## the torch and the ONNX runtime")
        res["runtimes"] = runtimes_section(images, paths, opts.reps, opts.warmup, log, clock)
    if "kernels" in opts.sections:
        log("\n## the synthesis' transposed convolutions, torch against ONNX Runtime")
        res["kernels"] = kernels_section(images, opts.reps, opts.warmup, log, clock)
    return res


if __name__ == "__main__":  # the scaling section's child process
    if len(sys.argv) == 6 and sys.argv[1] == "--scaling-child":
        import warnings

        warnings.filterwarnings("ignore")
        r = _scaling_child(float(sys.argv[2]), sys.argv[3], sys.argv[4] or None, int(sys.argv[5]) if sys.argv[5] else None)
        print(json.dumps(r))
    else:
        sys.exit("usage: imgcodec bench (this module's own entry point is for the scaling child process)")
