"""The device of one process of a run: its precision, threads and seeds.

``bf16`` runs the transforms under bf16 autocast with channels-last tensors and keeps the entropy
models in fp32 (``models.base.full_precision``); the weights, the optimizer state and every
checkpoint stay fp32, so encoding and decoding are unchanged.  ``auto`` picks bf16 where the
hardware computes it natively (AMX or AVX512-BF16 on the CPU, a bf16 GPU) and fp32 elsewhere.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from .options import Precision, TrainOptions


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16); elsewhere autocast still
    works, emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(precision: Precision | str, device: torch.device) -> Precision:
    """``fp32`` or ``bf16`` for ``precision`` on ``device``."""
    precision = Precision.parse(precision)
    if precision is not Precision.AUTO:
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = cpu_has_bf16()
    return Precision.BF16 if native else Precision.FP32


def setup_device(opts: TrainOptions, rank: int) -> tuple[torch.device, Precision]:
    """The device of this rank and its precision; sets the threads and seeds."""
    device = torch.device(opts.device if opts.device != "cuda" else f"cuda:{rank % max(torch.cuda.device_count(), 1)}")
    if opts.threads:
        # One thread per process is fastest when the cores are shared: OpenMP's barriers stall
        # whenever one of its threads is descheduled.
        torch.set_num_threads(opts.threads)
    if device.type == "cuda":
        # Every step has the same shape (batch × 3 × patch²): cuDNN's autotuner pays for itself.
        torch.backends.cudnn.benchmark = True
    precision = resolve_precision(opts.precision, device)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    return device, precision
