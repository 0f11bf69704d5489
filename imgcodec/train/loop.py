"""The rate–distortion trainer: L = λ·255²·MSE + bpp (or λ·(1 − MS-SSIM) + bpp).

One loop, short enough to read in one sitting.  The network and the entropy bottleneck's
quantiles have separate Adam optimizers (the quantiles follow their own auxiliary loss).  The run
directory holds ``state.safetensors`` (weights and both optimizers' state, written atomically at
an interval, so ``--resume`` after ``kill -9`` loses at most one interval) and ``metrics.csv``.
Under ``torchrun`` the same loop trains with DistributedDataParallel (gloo on CPU, nccl on GPU).
A continuous-rate model (gain units) trains all its quality levels in one run: each step draws a
level and takes that level's λ in the loss (Cui et al., CVPR 2021).

``--precision bf16`` runs the transforms under bf16 autocast with channels-last tensors and keeps
the entropy models in fp32 (``models.base.full_precision``); the weights, the optimizer state and
every checkpoint stay fp32, so encoding and decoding are unchanged.  ``auto`` picks bf16 where the
hardware computes it natively (AMX or AVX512-BF16 on the CPU, a bf16 GPU) and fp32 elsewhere.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic import write_bytes_atomic
from ..codec.imageio import find_images, load_rgb_array
from ..codec.tensors import pad_image
from ..errors import CodecError, InputError, ModelError
from ..models import store
from ..models.base import bits_per_pixel
from ..models.growth import init_from
from ..models.registry import build_model

STATE_FILE = "state.safetensors"
METRICS_FILE = "metrics.csv"
METRIC_FIELDS = ["step", "seconds", "lr", "loss", "bpp", "mse", "psnr", "aux", "val_bpp", "val_psnr"]


@dataclass
class TrainOptions:
    model: str
    data: Path | list[Path]  # one folder or several: crops are drawn across all their images
    out: Path
    quality: int | None = None
    lmbda: float | None = None
    val: Path | list[Path] | None = None
    steps: int | None = None
    minutes: float | None = None
    resume: bool = False
    init: Path | None = None
    batch_size: int | None = None
    patch: int | None = None
    lr: float | None = None
    metric: str | None = None
    checkpoint_seconds: float = 120.0
    val_every: int = 1000
    log_every: int = 50
    seed: int = 0
    workers: int = 1
    device: str = "cpu"
    ship: bool = False
    progress: bool = True
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    stop_after: int | None = None  # end this process early at that step (the schedule keeps `steps`)
    precision: str = "auto"  # auto, fp32 or bf16 (the transforms only; see the module docstring)
    # None: the model's recipe (models/NAME.toml [training])
    optimizer: str | None = None
    schedule: str | None = None
    ema: float | None = None
    quantization: str | None = None
    downscale: float | None = None
    home: Path | None = None  # the store (models/, checkpoints/) of the model (None: the default store)


PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adam", "schedulefree", "soap")
SCHEDULES = ("decay", "constant")
QUANTIZATIONS = ("noise", "mixed")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16); elsewhere autocast still
    works, emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise CodecError(f"unknown precision {precision!r} (auto, fp32 or bf16)")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


# ---------------------------------------------------------------------------------------------
# Data


class RandomCrops(torch.utils.data.Dataset):
    """Random crops with random horizontal flips from images held in memory (uint8).

    With ``downscale < 1`` every crop is taken at a random scale s in [downscale, 1]: a square of
    patch/s pixels, resized to the patch with an antialiasing filter.  Photographs of megapixels
    then show the detail per pixel of smaller scenes (Kodak's are 768×512).  Images smaller than
    the patch are padded by reflection (replication where reflection cannot reach) so every crop
    has the full size.
    """

    def __init__(self, images: list[np.ndarray], patch: int, length: int, seed: int = 0, downscale: float = 1.0):
        if not 0 < downscale <= 1:
            raise CodecError(f"downscale must be in (0, 1], not {downscale}")
        self.images = images
        self.patch = patch
        self.length = length
        self.seed = seed
        self.downscale = downscale

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        # Crop i depends only on (seed, i): workers, restarts and resumes see the same stream.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        h, w, _ = img.shape
        p = self.patch
        size = p
        if self.downscale < 1:
            s = self.downscale + (1 - self.downscale) * float(torch.rand((), generator=g))
            size = max(p, min(round(p / s), h, w))  # never past the image: small ones stay at scale 1
        y = int(torch.randint(max(h - size, 0) + 1, (1,), generator=g))
        x = int(torch.randint(max(w - size, 0) + 1, (1,), generator=g))
        crop = torch.from_numpy(np.array(img[y : y + size, x : x + size])).permute(2, 0, 1)
        crop = crop.float().div_(255)
        if size != p and min(crop.shape[1:]) >= size:
            crop = F.interpolate(crop[None], size=(p, p), mode="bilinear", antialias=True, align_corners=False)[0]
            crop = crop.clamp_(0, 1)
        if crop.shape[1] < p or crop.shape[2] < p:
            crop = pad_image(crop[None], p, p)[0]
        if bool(torch.randint(2, (1,), generator=g)):
            crop = crop.flip(-1)
        return crop


class CropIndices(torch.utils.data.Sampler):
    """Crop numbers for one rank: step k of rank r takes crops (k·world + r)·batch … + batch − 1.

    Every rank sees different crops, and a resumed run continues the stream where it stopped.
    """

    def __init__(self, start_step: int, batch: int, rank: int, world: int):
        self.start_step, self.batch, self.rank, self.world = start_step, batch, rank, world

    def __iter__(self):
        k = self.start_step
        while True:
            first = (k * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)
            k += 1


def load_images(folders: Path | list[Path]) -> list[np.ndarray]:
    """Every image under one folder or several, decoded to uint8 RGB and held in memory."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    images = []
    for folder in folders:
        files = find_images(Path(folder))
        if not files:
            raise InputError(f"no images found in {folder}")
        images.extend(load_rgb_array(f) for f in files)
    return images


# ---------------------------------------------------------------------------------------------
# State (safetensors only: weights and optimizer moments as tensors, the rest as JSON metadata)


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """An optimizer's state as tensors (``PREFIX.IDX.KEY``) and JSON; a list of tensors (SOAP's
    preconditioner bases, one per dimension) as a nested JSON structure whose tensors are stored
    under ``PREFIX-list.IDX.KEY.PATH``."""
    sd = opt.state_dict()
    scalars, lists = {}, {}

    def nested(v, key: str):
        if torch.is_tensor(v):
            # stored in its memory order and permuted back on load: an eigenbasis comes out
            # column-major, and a matmul over other strides rounds differently (resume is exact)
            order = sorted(range(v.dim()), key=lambda d: -v.stride(d))
            tensors[key] = v.detach().cpu().permute(order).contiguous()
            return {"tensor": key, "order": order}
        if isinstance(v, (list, tuple)):
            return [nested(x, f"{key}.{j}") for j, x in enumerate(v)]
        return {"value": v}

    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{idx}.{k}"] = v.detach().cpu().contiguous()
            elif isinstance(v, (list, tuple)):
                lists[f"{idx}.{k}"] = nested(v, f"{prefix}-list.{idx}.{k}")
            else:
                scalars[f"{idx}.{k}"] = v
    meta[prefix] = json.dumps({"param_groups": sd["param_groups"], "scalars": scalars, "lists": lists})


def _unflatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    info = json.loads(meta[prefix])
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            idx, k = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in info["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v

    def restored(node):
        if isinstance(node, list):
            return [restored(x) for x in node]
        if "tensor" not in node:
            return node["value"]
        order = node["order"]
        return tensors[node["tensor"]].permute([order.index(d) for d in range(len(order))])

    for key, node in info.get("lists", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = restored(node)
    for group in info["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_state(path: Path, model, opt, aux_opt, step: int, seconds: float, options: dict,
               ema: dict[str, torch.Tensor] | None = None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in (ema or {}).items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    meta = {"step": str(step), "seconds": repr(seconds), "options": json.dumps(options)}
    _flatten_optimizer("opt", opt, tensors, meta)
    _flatten_optimizer("aux", aux_opt, tensors, meta)
    tensors["rng.torch"] = torch.get_rng_state()  # the quantization noise continues exactly
    write_bytes_atomic(path, st_save(tensors, metadata=meta), force=True)


def state_step(path: Path) -> int:
    """The step a run's state file holds, read from its metadata alone."""
    return int(store._safetensors_metadata(Path(path).read_bytes())["step"])


def load_state(path: Path, model, opt, aux_opt, ema: dict[str, torch.Tensor] | None = None) -> tuple[int, float]:
    data = Path(path).read_bytes()
    tensors = st_load(data)
    meta = store._safetensors_metadata(data)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    if ema is not None:
        saved = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if saved.keys() != ema.keys():  # a run that had no average: it starts from the weights
            saved = {k: v.detach().clone() for k, v in model.named_parameters() if k in ema}
        for k, v in saved.items():
            ema[k].copy_(v)
    _unflatten_optimizer("opt", opt, tensors, meta)
    _unflatten_optimizer("aux", aux_opt, tensors, meta)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta["seconds"])


# ---------------------------------------------------------------------------------------------
# Optimizers and the weights they stand for


def make_optimizer(name: str, params: list, lr: float) -> torch.optim.Optimizer:
    """``adam``, ``soap`` (below), or ``schedulefree``: schedule-free AdamW (A. Defazio et al., "The Road Less
    Scheduled", NeurIPS 2024), which needs no decay and no known end: training can continue from
    its state indefinitely.  It trains at the interpolation y of its iterates z and their average
    x, and x is the model to evaluate (:func:`inference_model`)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "schedulefree":
        import schedulefree  # deferred: only this optimizer needs it

        opt = schedulefree.AdamWScheduleFree(params, lr=lr, warmup_steps=0, weight_decay=0.0)
        opt.train()
        return opt
    if name == "soap":
        from pytorch_optimizer import SOAP  # deferred: only this optimizer needs it

        # Adam in the eigenbasis of Shampoo's preconditioner, refreshed every 10 steps (N. Vyas et
        # al., "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025); betas of the paper.
        return SOAP(params, lr=lr, betas=(0.95, 0.95), weight_decay=0.0, precondition_frequency=10)
    raise CodecError(f"unknown optimizer {name!r} ({', '.join(OPTIMIZERS)})")


@torch.no_grad()
def inference_model(model, opt, ema: dict[str, torch.Tensor] | None):
    """A copy of ``model`` holding the weights to validate and ship: the moving average where there
    is one, schedule-free AdamW's average x = y + (1 − 1/β₁)(z − y) where that optimizer trains,
    else the weights themselves.  The training model is left untouched (bit for bit)."""
    copy_ = copy.deepcopy(model)
    params = dict(copy_.named_parameters())
    if ema:
        for k, v in ema.items():
            params[k].copy_(v)
    elif "train_mode" in opt.param_groups[0]:
        names = {id(p): k for k, p in model.named_parameters()}
        for group in opt.param_groups:
            beta1 = group["betas"][0]
            for p in group["params"]:
                z = opt.state.get(p, {}).get("z")
                if z is not None:
                    params[names[id(p)]].copy_(torch.lerp(p, z, 1 - 1 / beta1))
    return copy_.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------------------------------
# Validation with the real codec: actual compressed bytes and PSNR of the decoded 8-bit image


@torch.no_grad()
def validate(model, images: list[np.ndarray], device: str = "cpu", quality=None) -> tuple[float, float]:
    from ..codec.api import code_array
    from ..eval.evaluate import bpp, psnr

    # On a copy: update() resizes the entropy models' CDF buffers, and a training model's buffers
    # must not change under it (DDP broadcasts them from rank 0 at the next step; a resized one
    # breaks that collective).
    model = copy.deepcopy(model).eval()
    model.update(force=True)
    bpps, psnrs = [], []
    for img in images:
        nbytes, decoded = code_array(model, img, device, quality)
        bpps.append(bpp(nbytes, img.shape[1], img.shape[0]))
        psnrs.append(psnr(img, decoded))
    return float(np.mean(bpps)), float(np.mean(psnrs))


# ---------------------------------------------------------------------------------------------
# The loop


def train(opts: TrainOptions) -> dict:
    """Train (or resume, or fine-tune) one rate point; returns a summary dict. Under ``torchrun``
    (WORLD_SIZE > 1) it joins the process group and leaves it again on the way out."""
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        if dist.is_initialized():
            return _train(opts, dist.get_rank(), dist.get_world_size())
        return _train(opts, 0, 1)
    finally:
        if joined:
            # Without this a rank that finishes first can exit while gloo's threads are still
            # joinable: the interpreter's shutdown then aborts it ("terminate called without an
            # active exception", SIGABRT) and torchrun reports the run failed.
            dist.destroy_process_group()


@dataclass(frozen=True)
class Plan:
    """The resolved options of one run: the command line over the model's recipe, checked once."""

    config: object  # ModelConfig
    lmbda: float | None  # None: a continuous-rate model trains every level, one drawn per step
    val_quality: float | None
    batch: int
    patch: int
    metric: str
    lr: float
    optimizer: str
    schedule: str
    ema: float
    quantization: str
    downscale: float

    @property
    def every_level(self) -> bool:
        return self.lmbda is None

    def lr_at(self, progress: float) -> float:
        """The learning rate at ``progress`` (0..1) of the budget."""
        recipe = self.config.training
        decayed = self.schedule == "decay" and progress >= recipe.decay_at
        return self.lr * (recipe.decay if decayed else 1.0)

    def step_target(self, opts: TrainOptions, step: int, rank: int) -> tuple[float | None, float]:
        """``(quality, λ)`` of one step; a continuous model's level is drawn from (seed, step, rank)
        alone, so that a resumed run draws the same levels."""
        if not self.every_level:
            return opts.quality, self.lmbda
        level = random.Random(f"{opts.seed}:{step}:{rank}").randrange(len(self.config.lambdas))
        return level + 1, self.config.lambdas[level]


def resolve_plan(opts: TrainOptions) -> Plan:
    config = (store.Store.at(opts.home) if opts.home else store.default_store()).load_config(opts.model)
    recipe = config.training
    # A continuous-rate model (gain units) trains every level of its λ ladder, one drawn per step,
    # unless --quality picks one.
    every_level = config.continuous and opts.quality is None
    if config.continuous and opts.lmbda is not None:
        raise CodecError(f"model {config.name!r} trains the λ of its quality levels: give --quality K "
                         "to train one level, or neither to train them all (not --lambda)")
    if opts.lmbda is None and opts.quality is None and not every_level:
        raise CodecError("give --quality or --lambda")
    if opts.steps is None and opts.minutes is None:
        raise CodecError("give --steps or --minutes")
    lmbda = None if every_level else opts.lmbda if opts.lmbda is not None else config.lmbda(opts.quality)
    patch = opts.patch or recipe.patch
    metric = opts.metric or recipe.metric
    if metric not in ("mse", "ms-ssim"):
        raise CodecError(f"unknown metric {metric!r} (mse or ms-ssim)")
    if metric == "ms-ssim" and patch <= 160:
        raise CodecError("--metric ms-ssim needs --patch above 160 (five MS-SSIM scales)")
    if patch % 16:
        raise CodecError(f"--patch must be a multiple of 16, not {patch}")
    optimizer = opts.optimizer or recipe.optimizer
    if optimizer not in OPTIMIZERS:
        raise CodecError(f"unknown optimizer {optimizer!r} ({', '.join(OPTIMIZERS)})")
    # schedule-free AdamW replaces the schedule; a recipe's decay does not apply to it
    schedule = opts.schedule or ("constant" if optimizer == "schedulefree" else recipe.schedule)
    if schedule not in SCHEDULES:
        raise CodecError(f"unknown schedule {schedule!r} ({', '.join(SCHEDULES)})")
    if optimizer == "schedulefree" and schedule != "constant":
        raise CodecError("the schedule-free optimizer takes no lr schedule (--schedule constant)")
    ema = recipe.ema if opts.ema is None else opts.ema
    if not 0 <= ema < 1:
        raise CodecError(f"--ema must be in [0, 1), not {ema}")
    quantization = opts.quantization or recipe.quantization
    if quantization not in QUANTIZATIONS:
        raise CodecError(f"unknown quantization {quantization!r} ({', '.join(QUANTIZATIONS)})")
    downscale = recipe.downscale if opts.downscale is None else opts.downscale
    if not 0 < downscale <= 1:
        raise CodecError(f"--downscale must be in (0, 1], not {downscale}")
    return Plan(
        config=config, lmbda=lmbda,
        val_quality=(opts.quality or config.default_quality) if config.continuous else None,
        batch=opts.batch_size or recipe.batch_size, patch=patch, metric=metric,
        lr=opts.lr if opts.lr is not None else (recipe.finetune_lr if opts.init else recipe.lr),
        optimizer=optimizer, schedule=schedule, ema=ema, quantization=quantization, downscale=downscale,
    )


def setup_device(opts: TrainOptions, rank: int) -> tuple[torch.device, str]:
    """The device of this rank, its precision, threads and seeds."""
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


@dataclass
class Trainee:
    """What one run optimizes, and how: the model, its two optimizers and the moving average."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    aux_opt: torch.optim.Optimizer
    ema: dict[str, torch.Tensor] | None
    net_params: list
    aux_params: list
    init_sha: str | None = None


def build_trainee(opts: TrainOptions, plan: Plan, device: torch.device, precision: str, resuming: bool) -> Trainee:
    """The model (from ``--init`` unless the run resumes), the net and aux optimizers, the average."""
    model = build_model(plan.config).to(device)
    init_sha = None
    if opts.init and not resuming:
        loaded = store.load_checkpoint_file(Path(opts.init))
        try:
            init_from(model, loaded.model)
        except ModelError as exc:
            raise ModelError(f"--init {opts.init}: {exc}") from None
        init_sha = loaded.sha256
    if precision == "bf16":
        # oneDNN's bf16 convolutions are fastest on NHWC; the weights stay fp32 (autocast casts)
        model = model.to(memory_format=torch.channels_last)
    net_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    ema = None
    if plan.ema:
        ema = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".quantiles")}
    return Trainee(model, make_optimizer(plan.optimizer, net_params, plan.lr),
                   torch.optim.Adam(aux_params, lr=plan.config.training.aux_lr), ema, net_params, aux_params, init_sha)


def distributed(model, device: torch.device, world: int):
    """``model`` itself on one process; under torchrun, wrapped in DDP."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    # The quantiles follow the auxiliary loss, outside DDP's reducer; averaged by hand in train_step.
    DDP._set_params_and_buffers_to_ignore_for_model(
        model, [n for n, _ in model.named_parameters() if n.endswith(".quantiles")]
    )
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def crop_loader(opts: TrainOptions, plan: Plan, step: int, rank: int, world: int, device: torch.device):
    """An endless stream of batches of crops, continuing at ``step``."""
    dataset = RandomCrops(load_images(opts.data), plan.patch, length=10**9, seed=opts.seed, downscale=plan.downscale)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=plan.batch,
        shuffle=False,
        sampler=CropIndices(step, plan.batch, rank, world),
        num_workers=opts.workers,
        persistent_workers=opts.workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(opts.seed),
    )


def train_step(net, t: Trainee, plan: Plan, x: torch.Tensor, quality, lmbda: float, precision: str,
               world: int) -> torch.Tensor:
    """One R-D step and one aux step; returns ``[loss, bpp, mse, aux]`` (on the device)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = net(x, quality=quality, quantization=plan.quantization)
    x_hat = out["x_hat"].float()  # the loss in fp32 whatever the transforms ran in
    bpp = bits_per_pixel(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
    mse = F.mse_loss(x_hat, x)
    if plan.metric == "mse":
        distortion = lmbda * 255**2 * mse
    else:
        from pytorch_msssim import ms_ssim  # deferred: only this metric needs it

        distortion = lmbda * (1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0))
    loss = distortion + bpp
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.net_params, plan.config.training.clip_grad)
    t.opt.step()
    if t.ema is not None:
        with torch.no_grad():
            # the average holds exactly net_params, in their order (build_trainee)
            torch._foreach_lerp_(list(t.ema.values()), t.net_params, 1 - plan.ema)

    aux = t.model.aux_loss()
    t.aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    if world > 1:
        for p in t.aux_params:
            dist.all_reduce(p.grad)
            p.grad /= world
    t.aux_opt.step()
    return torch.stack([loss.detach(), bpp.detach(), mse.detach(), aux.detach()])


def _train(opts: TrainOptions, rank: int, world: int) -> dict:
    plan = resolve_plan(opts)
    device, precision = setup_device(opts, rank)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    resuming = opts.resume and (out / STATE_FILE).exists()
    t = build_trainee(opts, plan, device, precision, resuming)
    step, seconds = load_state(out / STATE_FILE, t.model, t.opt, t.aux_opt, t.ema) if resuming else (0, 0.0)
    options_json = {k: str(v) if isinstance(v, Path) else [str(f) for f in v] if isinstance(v, list) else v
                    for k, v in dataclasses.asdict(opts).items()}
    options_json.update(lmbda=plan.lmbda, batch_size=plan.batch, patch=plan.patch, metric=plan.metric, lr=plan.lr,
                        precision=precision, optimizer=plan.optimizer, schedule=plan.schedule, ema=plan.ema,
                        quantization=plan.quantization, downscale=plan.downscale)
    net = distributed(t.model, device, world)
    data_iter = iter(crop_loader(opts, plan, step, rank, world, device))
    val_images = load_images(opts.val) if opts.val else []
    metrics_path = out / METRICS_FILE
    _truncate_metrics(metrics_path, step)

    bar = None
    if opts.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=opts.steps, initial=step, unit="step", mininterval=5, dynamic_ncols=True)

    t.model.train()
    last_ckpt = time.monotonic()
    t_start = time.monotonic() - seconds
    # Sums of loss, bpp, mse, aux since the last log row, kept on the device: reading them back
    # every step would stall a GPU on each step.
    sums, count = torch.zeros(4, device=device), 0
    while True:
        elapsed = time.monotonic() - t_start
        progress = (step / opts.steps if opts.steps else 1.0) if opts.steps is not None else elapsed / (opts.minutes * 60)
        flags = torch.tensor([float(progress >= 1.0), progress])
        if world > 1:
            dist.broadcast(flags, 0)
        if flags[0] > 0 or (opts.stop_after is not None and step >= opts.stop_after):
            break
        lr = plan.lr_at(float(flags[1]))
        for g in t.opt.param_groups:
            g["lr"] = lr
        x = next(data_iter).to(device, non_blocking=True)
        if precision == "bf16":
            x = x.contiguous(memory_format=torch.channels_last)
        quality, lmbda = plan.step_target(opts, step, rank)
        sums += train_step(net, t, plan, x, quality, lmbda, precision, world)
        step += 1
        count += 1
        if bar is not None:
            bar.update(1)

        row = None
        log_now = step % opts.log_every == 0 or (opts.val and step % opts.val_every == 0)
        save_now = rank == 0 and time.monotonic() - last_ckpt >= opts.checkpoint_seconds
        if log_now or save_now:  # never log or save a diverged state
            mean_loss, mean_bpp, mean_mse, mean_aux = (sums / max(count, 1)).tolist()
            if not math.isfinite(mean_loss):
                raise CodecError(f"training diverged by step {step} (loss {mean_loss}); lower --lr")
        if log_now:
            row = {"step": step, "seconds": round(time.monotonic() - t_start, 2), "lr": lr, "loss": mean_loss,
                   "bpp": mean_bpp, "mse": mean_mse, "psnr": 10 * math.log10(1 / max(mean_mse, 1e-10)), "aux": mean_aux}
            sums.zero_()
            count = 0
        if rank == 0 and val_images and step % opts.val_every == 0:
            row["val_bpp"], row["val_psnr"] = validate(inference_model(t.model, t.opt, t.ema), val_images,
                                                       opts.device, plan.val_quality)
        if rank == 0 and row is not None:
            _append_metrics(metrics_path, row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}")
        if save_now:
            save_state(out / STATE_FILE, t.model, t.opt, t.aux_opt, step, time.monotonic() - t_start, options_json, t.ema)
            last_ckpt = time.monotonic()

    seconds = time.monotonic() - t_start
    summary = {"step": step, "seconds": round(seconds, 2), "lambda": plan.lmbda, "weights": weights_digest(t.model)}
    if rank == 0:
        save_state(out / STATE_FILE, t.model, t.opt, t.aux_opt, step, seconds, options_json, t.ema)
        summary.update(finish(opts, plan, t, step, seconds, f"{device.type} x{world}", precision, val_images))
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    return summary


def time_steps(opts: TrainOptions, steps: int, warm: int = 2) -> dict[str, float]:
    """Seconds (``wall``, and ``cpu`` of this process) that ``steps`` training steps of ``opts``
    take after ``warm`` untimed ones, on batches loaded beforehand: the step itself (forward,
    backward, both optimizers), without start-up, data loading or checkpoints."""
    if steps < 1:
        raise CodecError(f"steps must be at least 1, not {steps}")
    plan = resolve_plan(dataclasses.replace(opts, steps=opts.steps or warm + steps))
    device, precision = setup_device(opts, 0)
    t = build_trainee(opts, plan, device, precision, False)
    batches = []
    for x in crop_loader(dataclasses.replace(opts, workers=0), plan, 0, 0, 1, device):
        batches.append(x.to(device))
        if len(batches) == warm + steps:
            break
    if precision == "bf16":
        batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
    t.model.train()

    def run(xs, first):
        for i, x in enumerate(xs):
            quality, lmbda = plan.step_target(opts, first + i, 0)
            train_step(t.model, t, plan, x, quality, lmbda, precision, 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(batches[:warm], 0)
    w0, c0 = time.perf_counter(), time.process_time()
    run(batches[warm:], warm)
    return {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}


def finish(opts: TrainOptions, plan: Plan, t: Trainee, step: int, seconds: float, where: str, precision: str,
           val_images: list[np.ndarray]) -> dict:
    """Write ``final.safetensors`` (the weights to ship, on the CPU, in fp32, CDF tables updated),
    validate it and ship it where asked; returns what goes into the summary."""
    config = plan.config
    model = inference_model(t.model, t.opt, t.ema).to("cpu").eval()
    model.update(force=True)
    summary = {"final_weights": weights_digest(model)}  # the average or iterate that ships
    meta = {
        "quality": store.EVERY_QUALITY if config.continuous else opts.quality or 0,
        "lambda": plan.lmbda,
        "metric": plan.metric,
        "steps": step,
        "train_seconds": round(seconds, 1),
        "device": where,
        "data": ", ".join(str(f) for f in ([opts.data] if isinstance(opts.data, (str, Path)) else opts.data)),
        "precision": precision,
        "init": t.init_sha,
    }
    if config.continuous:
        meta["lambdas"] = list(config.lambdas)
    final = Path(opts.out) / "final.safetensors"
    summary["sha256"] = store.save_checkpoint(model, final, **meta)
    summary["checkpoint"] = str(final)
    if val_images:
        summary["val_bpp"], summary["val_psnr"] = validate(model, val_images, "cpu", plan.val_quality)
    if opts.ship:
        if not opts.quality and not config.continuous:
            raise CodecError("--ship needs --quality")
        summary["shipped"] = ship_checkpoint(final, opts.model, meta["quality"], meta,
                                             into=store.Store.at(opts.home) if opts.home else None)
    return summary


def weights_digest(model) -> str:
    """sha256 over the parameters and buffers, less the coder's tables (derived by ``update()``):
    equal digests mean bit-identical replicas."""
    import hashlib

    h = hashlib.sha256()
    derived = ("_quantized_cdf", "_offset", "_cdf_length")
    for name, t in sorted(model.state_dict().items()):
        if name.endswith(derived):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def ship_checkpoint(path: Path, model: str, quality: int, meta: dict, extra: dict | None = None,
                    into: store.Store | None = None) -> str:
    """Copy a final checkpoint into ``checkpoints/`` of the store ``into`` (default: the default
    store) and record it in the manifest (quality ``store.EVERY_QUALITY``: a continuous-rate model's
    one checkpoint)."""
    into = into or store.default_store()
    name = f"{model}.safetensors" if quality == store.EVERY_QUALITY else f"{model}-q{quality}.safetensors"
    data = Path(path).read_bytes()
    write_bytes_atomic(into.checkpoints / name, data, force=True)
    entries = [e for e in into.read_manifest() if not (e["model"] == model and e["quality"] == quality)]
    entry = {"model": model, "quality": quality, "file": name, "sha256": store.sha256_file(into.checkpoints / name)}
    entry.update({k: v for k, v in meta.items() if k != "quality"})
    entry.update(extra or {})
    entries.append(entry)
    into.write_manifest(entries)
    store.load_shipped.cache_clear()
    return name


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log rows written after the state we resumed from."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
