"""The rate–distortion trainer: L = λ·255²·MSE + bpp (or λ·(1 − MS-SSIM) + bpp).

The network follows the R-D loss (``codec.refine.rd_loss``, the objective that refinement
minimizes too) with the run's optimizer; the entropy bottleneck's quantiles follow their own
auxiliary loss with their own Adam.  A continuous-rate model (gain units) trains all its quality
levels in one run: each step draws a level and takes that level's λ (Cui et al., CVPR 2021).

The run folder holds ``state.safetensors`` (written atomically every ``--checkpoint-seconds``, so
that ``--resume`` after ``kill -9`` loses at most one interval and continues bit-exactly),
``metrics.csv`` and, at the end, ``final.safetensors``.  Under ``torchrun`` the same loop trains
with DistributedDataParallel.  What the loop stands on is in the modules beside it: the options
(``options``), the crops (``data``), the device and precision (``device``), the optimizers and the
averaged weights (``optimizers``, ``averaging``), the state file (``state``), the log
(``metrics``), validation (``validation``), the processes (``ddp``) and the final weights
(``ship``).
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from ..codec.refine import rd_loss
from ..errors import ModelError
from ..models import store
from ..models.base import bits_per_pixel
from ..models.growth import init_from, reopen_latent
from ..models.registry import build_model
from . import ddp
from .averaging import update_average
from .data import crop_loader, load_images
from .device import setup_device
from .metrics import METRICS_FILE, Metrics
from .optimizers import Trainee
from .options import Precision, TrainOptions
from .ship import finish
from .state import STATE_FILE, load_state, save_state, weights_digest
from .validation import validate


def train(opts: TrainOptions) -> dict:
    """Train (or resume, or fine-tune) one run; returns a summary dict.  Under ``torchrun``
    (WORLD_SIZE > 1) every process calls this with the same options."""
    opts = opts.resolve()
    with ddp.process_group() as (rank, world):
        return _train(opts, rank, world)


def start(opts: TrainOptions, device: torch.device, precision: Precision, resuming: bool) -> Trainee:
    """The model (from ``--init`` unless the run resumes), its optimizers and its average."""
    model = build_model(opts.config).to(device)
    init_sha = None
    if opts.init and not resuming:
        loaded = store.load_checkpoint_file(opts.init)
        try:
            init_from(model, loaded.model)
        except ModelError as exc:
            raise ModelError(f"--init {opts.init}: {exc}") from None
        init_sha = loaded.sha256
        if opts.latent_warmup is not None:  # the warmed channels start open (a resumed run has them)
            reopen_latent(model, opts.latent_warmup[0], opts.seed)
    if precision is Precision.BF16:
        # oneDNN's bf16 convolutions are fastest on NHWC; the weights stay fp32 (autocast casts)
        model = model.to(memory_format=torch.channels_last)
    return Trainee.around(model, opts, init_sha)


def train_step(net, t: Trainee, opts: TrainOptions, x: torch.Tensor, quality, lmbda: float, precision: Precision,
               world: int, step: int = 0) -> torch.Tensor:
    """One R-D step and one aux step at ``quality`` (``None``: the config's default) and ``lmbda``;
    returns ``[loss, bpp, mse, aux]`` (on the device; ``bpp`` the full rate whatever the loss weighs)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision is Precision.BF16):
        point = t.model.rate_point(quality)  # the gain units' gains, with their gradient
        out = net(x, point, quantization=opts.quantization.value)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate = bits_per_pixel(out["likelihoods"], pixels)
    weight = opts.latent_rate_weight(step)
    if weight is not None:  # the warmed channels' bits count ``weight`` times
        warmed = out["likelihoods"]["y"][:, opts.latent_warmup[0]:]
        rate = bpp - (1 - weight) * bits_per_pixel({"y": warmed}, pixels)
    # the loss in fp32 whatever the transforms ran in
    loss, mse = rd_loss(rate, out["x_hat"].float(), x, lmbda, opts.metric.value)
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.net_params, opts.config.training.clip_grad)
    t.opt.step()
    update_average(t.ema, t.net_params, opts.ema)

    aux = t.model.aux_loss()
    t.aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    ddp.average_gradients(t.aux_params, world)  # outside DDP's reducer
    t.aux_opt.step()
    return torch.stack([loss.detach(), bpp.detach(), mse.detach(), aux.detach()])


def _train(opts: TrainOptions, rank: int, world: int) -> dict:
    device, precision = setup_device(opts, rank)
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    resuming = opts.resume and (out / STATE_FILE).exists()
    t = start(opts, device, precision, resuming)
    step, seconds = load_state(out / STATE_FILE, t.model, t.opt, t.aux_opt, t.ema) if resuming else (0, 0.0)
    record = dict(opts.to_json(), precision=precision.value)  # the options, as the state file keeps them

    def save(step: int, seconds: float) -> None:
        save_state(out / STATE_FILE, t.model, t.opt, t.aux_opt, step, seconds, record, t.ema)

    net = ddp.wrap(t.model, device, world)
    batches = iter(crop_loader(opts, step, rank, world, device))
    val_images = load_images(opts.val) if opts.val else []
    metrics = Metrics(out / METRICS_FILE if rank == 0 else None, step, device)
    bar = None
    if opts.progress and rank == 0:
        bar = tqdm(total=opts.steps, initial=step, unit="step", mininterval=5, dynamic_ncols=True)

    t.model.train()
    last_save = time.monotonic()
    t_start = time.monotonic() - seconds
    while True:
        done, progress = ddp.agree(opts.budget_used(step, time.monotonic() - t_start), world)
        if done or (opts.stop_after is not None and step >= opts.stop_after):
            break
        lr = opts.lr_at(progress)
        for g in t.opt.param_groups:
            g["lr"] = lr
        x = next(batches).to(device, non_blocking=True)
        if precision is Precision.BF16:
            x = x.contiguous(memory_format=torch.channels_last)
        quality, lmbda = opts.step_target(step, rank)
        metrics.add(train_step(net, t, opts, x, quality, lmbda, precision, world, step))
        step += 1
        if bar is not None:
            bar.update(1)

        validate_now = bool(val_images) and step % opts.val_every == 0  # on rank 0 only
        log_now = step % opts.log_every == 0 or (bool(opts.val) and step % opts.val_every == 0)
        save_now = rank == 0 and time.monotonic() - last_save >= opts.checkpoint_seconds
        if save_now and not log_now:
            metrics.means(step)  # never save a diverged state
        if log_now:
            row = metrics.row(step, time.monotonic() - t_start, lr)
            if validate_now:
                row["val_bpp"], row["val_psnr"] = validate(t.weights(), val_images, opts.device, opts.val_quality)
            metrics.write(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}")
        if save_now:
            save(step, time.monotonic() - t_start)
            last_save = time.monotonic()

    seconds = time.monotonic() - t_start
    if metrics.count:  # the steps since the last row: every run, however short, logs its end
        metrics.write(metrics.row(step, seconds, lr))
    summary = {"step": step, "seconds": round(seconds, 2), "lambda": opts.lmbda, "weights": weights_digest(t.model)}
    if rank == 0:
        save(step, seconds)
        summary.update(finish(opts, t, step, seconds, f"{device.type} x{world}", precision, val_images))
    if bar is not None:
        bar.close()
    ddp.barrier(world)
    return summary
