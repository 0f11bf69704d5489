"""The trainer on tiny data: loss falls, resume is exact, fine-tuning, shipping, DDP."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcodec.errors import CodecError, ModelError
from imgcodec.models import store
from imgcodec.train import TrainOptions, time_steps, train
from imgcodec.train.state import STATE_FILE, load_state, state_step

from conftest import natural_image

TINY = """
description = "tiny test model"
architecture = "factorized"
norm = "gdn"
N = 16
M = 24
lambdas = [0.01, 0.05]
default_quality = 1
[training]
lr = 2e-3
batch_size = 4
patch = 32
"""


@pytest.fixture()
def home(tmp_path):
    """A private store root (models/ + empty checkpoints/) so tests never touch the real one: the
    trainer gets it as ``TrainOptions(home=...)``, the library as ``Store.at(home)``, the command
    line (a subprocess) as ``$IMGCODEC_HOME``."""
    h = tmp_path / "home"
    (h / "models").mkdir(parents=True)
    (h / "checkpoints").mkdir()
    (h / "models" / "tiny.toml").write_text(TINY)
    yield h


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(natural_image(48, 40 + 8 * i, seed=i)).save(d / f"{i}.png")
    Image.fromarray(natural_image(20, 24, seed=9)).save(d / "sub" / "small.jpg")  # smaller than the patch
    return d


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def opts(home, images, run, **kw) -> TrainOptions:
    # fp32 unless a test asks: "auto" would train these tiny models in bf16 on some CPUs only
    base = dict(model="tiny", quality=1, data=images, out=run, steps=40, log_every=5, workers=0, progress=False,
                precision="fp32", home=home)
    base.update(kw)
    return TrainOptions(**base)


def test_loss_falls_and_logs(home, images, tmp_path):
    run = tmp_path / "run"
    summary = train(opts(home, images, run, steps=60, val=images, val_every=30))
    r = rows(run)
    assert [int(x["step"]) for x in r] == list(range(5, 61, 5))
    assert float(r[-1]["loss"]) < 0.7 * float(r[0]["loss"])
    validated = [x for x in r if x["val_bpp"]]
    assert [int(x["step"]) for x in validated] == [30, 60]
    assert float(validated[-1]["val_bpp"]) > 0 and float(validated[-1]["val_psnr"]) > 5
    assert summary["step"] == 60 and Path(summary["checkpoint"]).exists()
    loaded = store.load_checkpoint_file(Path(summary["checkpoint"]))
    assert loaded.meta["steps"] == 60 and loaded.meta["lambda"] == 0.01


def test_a_short_run_logs_its_end(home, images, tmp_path):
    """metrics.csv is written by every run: a row every log interval and one at the end, so a run
    shorter than the interval has its row; a run of no steps, the header."""
    run = tmp_path / "run"
    train(opts(home, images, run, steps=3))
    (row,) = rows(run)
    assert int(row["step"]) == 3 and float(row["loss"]) > 0 and float(row["bpp"]) > 0
    train(opts(home, images, run, steps=7, resume=True))
    assert [int(x["step"]) for x in rows(run)] == [3, 5, 7]
    train(opts(home, images, tmp_path / "none", steps=0))
    assert rows(tmp_path / "none") == []


def test_options_are_checked_once_with_choices_as_enums(home, images, tmp_path):
    """A TrainOptions is checked when it is built (choices become enums, paths Paths, a wrong value
    names its flag); resolve() fills the rest from the model's recipe; the command line offers
    exactly the enums' values."""
    from click import Choice

    from imgcodec.cli import train as train_command
    from imgcodec.train.options import Metric, Optimizer, Precision, Quantization, Schedule

    o = opts(home, images, str(tmp_path / "run"), optimizer="schedulefree", metric="mse")
    assert o.optimizer is Optimizer.SCHEDULEFREE and o.metric is Metric.MSE and o.precision is Precision.FP32
    assert o.data == (images,) and o.out == tmp_path / "run" and o.schedule is None and o.config is None
    for bad, message in [(dict(optimizer="sgd"), "unknown optimizer 'sgd' \\(adam, schedulefree, soap\\)"),
                         (dict(precision="fp16"), "unknown precision 'fp16'"),
                         (dict(patch=40), "--patch must be a positive multiple of 16, not 40"),
                         (dict(batch_size=0), "--batch-size must be at least 1"),
                         (dict(lr=-1.0), "--lr must be positive"),
                         (dict(downscale=1.5), "--downscale must be in \\(0, 1\\]"),
                         (dict(metric="ms-ssim", patch=160), "ms-ssim needs --patch above 160")]:
        with pytest.raises(CodecError, match=message):
            opts(home, images, tmp_path / "r", **bad)
    resolved = o.resolve()
    recipe = resolved.config.training
    assert resolved.resolve() is resolved
    assert (resolved.batch_size, resolved.patch, resolved.lr, resolved.ema) == (recipe.batch_size, recipe.patch,
                                                                                 recipe.lr, recipe.ema)
    assert resolved.schedule is Schedule.CONSTANT  # schedule-free: no schedule, whatever the recipe's
    assert resolved.quantization is Quantization.NOISE and resolved.lmbda == 0.01
    tuned = opts(home, images, tmp_path / "r", init=tmp_path / "x.safetensors").resolve()
    assert tuned.lr == recipe.finetune_lr and tuned.schedule is Schedule.DECAY and tuned.optimizer is Optimizer.ADAM
    choices = {p.name: p.type.choices for p in train_command.params if isinstance(p.type, Choice)}
    for name, enum in [("metric", Metric), ("precision", Precision), ("optimizer", Optimizer),
                       ("schedule", Schedule), ("quantization", Quantization)]:
        assert list(choices[name]) == enum.values()


def test_train_help_explains_every_option():
    from click.testing import CliRunner

    from imgcodec.cli import cli
    from imgcodec.cli import train as train_command

    assert all(p.help for p in train_command.params if p.name != "help"), \
        [p.name for p in train_command.params if not p.help]
    text = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output
    for flag, words in [("--batch-size", "Crops per step"), ("--patch", "multiple of 16"),
                        ("--lr", "Learning rate"), ("--metric", "Distortion in the loss"), ("--out", "metrics.csv")]:
        line = next(line for line in text.splitlines() if line.strip().startswith(flag))
        assert words in line, line


def test_time_steps_times_the_steps_alone(home, images, tmp_path):
    """The benchmark's step timer: positive wall and CPU seconds, growing with the steps, no run
    directory or checkpoint written; zero steps is refused."""
    o = opts(home, images, tmp_path / "run", steps=None)
    one, four = time_steps(o, 1, warm=1), time_steps(o, 4, warm=1)
    assert one["wall"] > 0 and one["cpu"] > 0
    assert four["cpu"] > one["cpu"]
    assert not (tmp_path / "run").exists()
    with pytest.raises(CodecError, match="steps must be at least 1"):
        time_steps(o, 0)


def test_resume_is_exact(home, images, tmp_path):
    """An interrupted run resumed from its state ends bit-identical to an uninterrupted one."""
    straight = train(opts(home, images, tmp_path / "a", steps=30))
    run = tmp_path / "b"
    train(opts(home, images, run, steps=30, checkpoint_seconds=0.0, stop_after=12))
    assert load_step(home, run) == 12
    resumed = train(opts(home, images, run, steps=30, resume=True))
    assert resumed["step"] == 30
    assert resumed["weights"] == straight["weights"]
    # a row every 5 steps, and one where the first process ended
    assert [int(x["step"]) for x in rows(run)] == [5, 10, 12, 15, 20, 25, 30]


def load_step(home: Path, run: Path) -> int:
    import torch

    from imgcodec.models.registry import build_model

    model = build_model(store.Store.at(home).load_config("tiny"))
    net = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    step, _ = load_state(run / STATE_FILE, model, torch.optim.Adam(net), torch.optim.Adam(aux))
    assert state_step(run / STATE_FILE) == step
    return step


def test_kill_9_then_resume(home, images, tmp_path):
    """A real `imgcodec train` process killed with SIGKILL resumes from its last state."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "imgcodec.cli", "train", "--model", "tiny", "-q", "1", "--data", str(images),
           "--out", str(run), "--steps", "100000", "--checkpoint-seconds", "0.5", "--workers", "0"]
    env = dict(os.environ, IMGCODEC_HOME=str(home))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # 20 steps take seconds; minutes where the cores are busy
        # one read per poll: the live process replaces the file (atomically) between any two
        while not (run / STATE_FILE).exists() or time.monotonic() < deadline and state_step(run / STATE_FILE) < 20:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = load_step(home, run)  # the state file is whole (atomic write), never half-written
    assert saved >= 20
    summary = train(opts(home, images, run, steps=saved + 10, resume=True))
    assert summary["step"] == saved + 10
    steps = [int(x["step"]) for x in rows(run)]
    assert steps == sorted(set(steps)) and max(steps) <= saved + 10  # no row twice, none from after the kill


def test_init_fine_tunes_from_checkpoint(home, images, tmp_path):
    base = train(opts(home, images, tmp_path / "base", steps=10))
    zero = train(opts(home, images, tmp_path / "ft0", steps=0, init=Path(base["checkpoint"])))
    assert zero["weights"] == base["weights"]  # no step taken: exactly the initial weights
    tuned = train(opts(home, images, tmp_path / "ft", steps=5, quality=2, init=Path(base["checkpoint"])))
    assert tuned["weights"] != base["weights"]
    assert store.load_checkpoint_file(Path(tuned["checkpoint"])).meta["init"] == base["sha256"]


def test_init_refuses_other_shape(home, images, tmp_path):
    """Narrower transforms cannot start from these weights, nor (for the factorized model) another
    latent width M; the error names the --init file (wider ones can: tests/test_widen.py)."""
    (home / "models" / "other-m.toml").write_text(TINY.replace("M = 24", "M = 32"))
    (home / "models" / "narrow.toml").write_text(TINY.replace("N = 16", "N = 8"))
    base = train(opts(home, images, tmp_path / "base", steps=1))
    for model, message in [("narrow", r"a tiny checkpoint \(norm gdn, N=16, M=24\) is of another shape"),
                           ("other-m", "architecture 'factorized' does not grow along M")]:
        with pytest.raises(ModelError, match=r"^--init .*: " + message):
            train(opts(home, images, tmp_path / model, model=model, steps=1, init=Path(base["checkpoint"])))


def test_init_across_architectures_carries_the_transforms_only(home, images, tmp_path):
    import torch

    (home / "models" / "tinyhp.toml").write_text(
        TINY.replace('architecture = "factorized"', 'architecture = "hyperprior"\ngain_units = true'))
    base = train(opts(home, images, tmp_path / "base", steps=3))
    hp = train(opts(home, images, tmp_path / "hp", model="tinyhp", steps=0, quality=None, init=Path(base["checkpoint"])))
    src = store.load_checkpoint_file(Path(base["checkpoint"])).model
    dst = store.load_checkpoint_file(Path(hp["checkpoint"]))
    assert dst.config.architecture == "hyperprior" and dst.meta["init"] == base["sha256"]
    for name in ("g_a", "g_s"):
        a, b = getattr(src, name).state_dict(), getattr(dst.model, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the factorized model's entropy bottleneck (M channels) is not the hyperprior's (N channels, of z)
    assert dst.model.entropy_bottleneck.quantiles.shape[0] == 16
    (home / "models" / "tinyhp-bn.toml").write_text(
        TINY.replace('architecture = "factorized"', 'architecture = "hyperprior"').replace('norm = "gdn"', 'norm = "bn"'))
    with pytest.raises(ModelError, match="another shape"):  # other transforms: refused
        train(opts(home, images, tmp_path / "x", model="tinyhp-bn", steps=1, quality=1, init=Path(base["checkpoint"])))


def test_ship_writes_checkpoint_and_manifest(home, images, tmp_path):
    import imgcodec

    summary = train(opts(home, images, tmp_path / "run", steps=5, quality=2, ship=True))
    tiny_store = store.Store.at(home)
    entry = tiny_store.manifest_entry("tiny", 2)
    assert entry["file"] == "tiny-q2.safetensors" and entry["steps"] == 5 and entry["lambda"] == 0.05
    assert entry["sha256"] == store.sha256_file(home / "checkpoints" / entry["file"]) == summary["sha256"]
    data = imgcodec.encode(Image.fromarray(natural_image(20, 20)), model="tiny", quality=2, store=tiny_store)
    assert imgcodec.decode(data, store=tiny_store).size == (20, 20)


def test_ms_ssim_metric(home, images, tmp_path):
    summary = train(opts(home, images, tmp_path / "run", steps=2, metric="ms-ssim", patch=176, batch_size=1))
    assert summary["step"] == 2
    with pytest.raises(CodecError, match="ms-ssim needs --patch above 160"):
        train(opts(home, images, tmp_path / "run2", steps=2, metric="ms-ssim"))


def test_bad_options(home, images, tmp_path):
    with pytest.raises(CodecError, match="--steps or --minutes"):
        train(opts(home, images, tmp_path / "r", steps=None))
    with pytest.raises(CodecError, match="multiple of 16"):
        train(opts(home, images, tmp_path / "r", patch=40))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CodecError, match="no images found"):
        train(opts(home, empty, tmp_path / "r"))


def test_ddp_two_gloo_processes_hold_identical_weights(home, images, tmp_path):
    """`imgcodec train` under torchrun with two CPU (gloo) processes: replicas stay identical, and a
    validation on rank 0 in mid-run does not break the next step's collectives."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29731",
           "-m", "imgcodec.cli", "train", "--model", "tiny", "-q", "1", "--data", str(images),
           "--out", str(tmp_path / "ddp"), "--steps", "8", "--workers", "0", "--batch-size", "2",
           "--val", str(images), "--val-every", "3"]
    env = dict(os.environ, IMGCODEC_HOME=str(home), OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-6000:]  # the failing rank speaks before torchrun
    digests = [tok.split("=", 1)[1] for tok in r.stdout.split() if tok.startswith("weights=")]
    assert len(digests) == 2 and digests[0] == digests[1]
    # and they moved: not the initial weights
    zero = train(opts(home, images, tmp_path / "zero", steps=0))
    assert digests[0] != zero["weights"]


# ---------------------------------------------------------------------------------------------
# Precision, data, augmentation, optimizers


def test_auto_precision_follows_the_cpu():
    import torch

    from imgcodec.train.device import cpu_has_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(CodecError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize("architecture", ["factorized", "meanscale"])
def test_bf16_autocast_keeps_the_rate_in_fp32(home, architecture):
    """Under bf16 autocast the transforms run in bf16, the likelihoods stay fp32 and agree with the
    fp32 pass to the precision of bf16 transforms (the rate term is not computed in bf16)."""
    import torch

    from imgcodec.models.base import bits_per_pixel
    from imgcodec.models.registry import build_model

    (home / "models" / "t.toml").write_text(TINY.replace('"factorized"', f'"{architecture}"'))
    model = build_model(store.Store.at(home).load_config("t")).eval()
    x = torch.from_numpy(natural_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    torch.manual_seed(0)
    ref = model(x)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low["x_hat"].dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in low["likelihoods"].values())
    a, b = (bits_per_pixel(o["likelihoods"], 64 * 64).item() for o in (ref, low))
    assert abs(a - b) < 0.02 * a


def test_bf16_training_writes_an_exact_fp32_checkpoint(home, images, tmp_path):
    """`--precision bf16` trains (emulated where the CPU lacks bf16) and ships an fp32 checkpoint:
    a file it encodes decodes to the same pixels every time, those the encoder's own decoding of
    the real bitstream gave."""
    import torch

    import imgcodec
    from imgcodec.codec.api import code_array

    summary = train(opts(home, images, tmp_path / "run", steps=6, precision="bf16", ship=True))
    loaded = store.load_checkpoint_file(Path(summary["checkpoint"]))
    assert loaded.meta["precision"] == "bf16"
    tensors = loaded.model.state_dict().values()
    assert all(t.dtype != torch.bfloat16 and t.is_contiguous() for t in tensors)
    rgb = natural_image(40, 56, seed=3)
    tiny_store = store.Store.at(home)
    data = imgcodec.encode(Image.fromarray(rgb), model="tiny", quality=1, store=tiny_store)
    first, second = (np.asarray(imgcodec.decode(data, store=tiny_store)) for _ in range(2))
    assert np.array_equal(first, second)
    _, decoded = code_array(loaded.model, rgb)
    assert np.array_equal(decoded, first)


def test_several_data_folders_feed_one_stream(home, images, tmp_path):
    from imgcodec.train.data import RandomCrops, load_images

    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(other / "flat.png")
    pooled = load_images([images, other])
    assert len(pooled) == len(load_images(images)) + 1
    crops = RandomCrops(pooled, patch=32, length=200, seed=0)
    flat = sum(bool((crops[i] * 255 - 7).abs().max() < 0.5) for i in range(200))
    assert 0 < flat < 200  # crops come from the flat photo and from the others
    summary = train(opts(home, [images, other], tmp_path / "run", steps=3))
    assert store.load_checkpoint_file(Path(summary["checkpoint"])).meta["data"] == f"{images}, {other}"


def test_a_folder_given_twice_weighs_twice_without_a_second_copy(images, tmp_path):
    """Repeating ``--data`` draws k times as many crops from that folder's images: the list holds
    its images k times, as the same arrays (memory for one copy)."""
    from imgcodec.train.data import RandomCrops, load_images

    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(other / "flat.png")
    n = len(load_images(images))
    pooled = load_images([images, other, Path(str(other) + "/")])
    assert len(pooled) == n + 2 and pooled[n] is pooled[n + 1]
    crops = RandomCrops(pooled, patch=32, length=600, seed=0)
    flat = sum(bool((crops[i] * 255 - 7).abs().max() < 0.5) for i in range(600))
    expected = 600 * 2 / (n + 2)
    assert abs(flat - expected) < 4 * (expected ** 0.5) + 1  # uniform over the list, duplicates included


def test_downscaled_crops_are_smoothed_and_deterministic():
    """Crops drawn at a random scale in [0.5, 1] are the patch size, reproducible from (seed, index),
    and filtered: one-pixel stripes lose most of their contrast."""
    import torch

    from imgcodec.train.data import RandomCrops

    stripes = np.zeros((200, 200, 3), np.uint8)
    stripes[:, ::2] = 255
    plain = RandomCrops([stripes], patch=32, length=50, seed=1)
    scaled = RandomCrops([stripes], patch=32, length=50, seed=1, downscale=0.5)
    assert scaled[3].shape == (3, 32, 32) and torch.equal(scaled[3], scaled[3])
    assert np.mean([float(plain[i].std()) for i in range(20)]) > 0.45
    assert np.mean([float(scaled[i].std()) for i in range(20)]) < 0.3
    with pytest.raises(CodecError, match="downscale must be in"):
        RandomCrops([stripes], patch=32, length=1, downscale=0)


@pytest.mark.parametrize("recipe", [
    dict(optimizer="adam", ema=0.9),
    dict(optimizer="schedulefree"),
    dict(optimizer="soap"),
    dict(optimizer="adam", quantization="mixed", downscale=0.5),
])
def test_each_optimizer_resumes_exactly_after_kill_9(home, images, tmp_path, recipe):
    """A real `imgcodec train` killed with SIGKILL and resumed ends bit-identical to a run that was
    never interrupted, for every optimizer option (the moving average and the schedule-free
    iterates are in the state)."""
    # one thread in both processes: other tests leave this process at another thread count, and
    # float sums differ across thread counts
    common = dict(schedule="constant", threads=1, **recipe)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "imgcodec.cli", "train", "--model", "tiny", "-q", "1", "--data", str(images),
           "--out", str(run), "--steps", "100000", "--checkpoint-seconds", "0", "--workers", "0",
           "--schedule", "constant", "--precision", "fp32", "--threads", "1"]
    for key, value in recipe.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, IMGCODEC_HOME=str(home))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not (run / STATE_FILE).exists() or time.monotonic() < deadline and state_step(run / STATE_FILE) < 8:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    total = state_step(run / STATE_FILE) + 6
    resumed = train(opts(home, images, run, steps=total, resume=True, precision="fp32", **common))
    straight = train(opts(home, images, tmp_path / "straight", steps=total, precision="fp32", **common))
    assert resumed["step"] == straight["step"] == total
    assert resumed["weights"] == straight["weights"]
    assert resumed["final_weights"] == straight["final_weights"]  # the shipped average or iterate too


def test_average_and_schedule_free_weights_are_what_ships(home, images, tmp_path):
    """The checkpoint holds the moving average (or schedule-free's x), not the last iterate."""
    import torch

    from imgcodec.train.averaging import inference_model
    from imgcodec.train.optimizers import make_optimizer

    plain = train(opts(home, images, tmp_path / "plain", steps=10, schedule="constant"))
    averaged = train(opts(home, images, tmp_path / "ema", steps=10, schedule="constant", ema=0.5))
    assert plain["weights"] == averaged["weights"]  # the same training trajectory
    assert plain["final_weights"] == plain["weights"]  # without an average, the last iterate ships
    assert averaged["final_weights"] != averaged["weights"]  # with one, the average
    # schedule-free: x = y + (1 - 1/β1)(z - y), computed without touching the training model
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    model = torch.nn.Module()
    model.register_parameter("w", p)
    opt = make_optimizer("schedulefree", [p], lr=0.1)
    p.grad = torch.tensor([1.0, -1.0])
    opt.step()
    y = p.detach().clone()
    x = inference_model(model, opt, None).w.detach()
    assert torch.equal(p.detach(), y)
    z = opt.state[p]["z"]
    assert torch.allclose(x, y + (1 - 1 / 0.9) * (z - y))
    opt.eval()  # the optimizer's own switch to x agrees
    assert torch.allclose(p.detach(), x, atol=1e-7)


def test_bad_recipe_options(home, images, tmp_path):
    with pytest.raises(CodecError, match="unknown optimizer 'sgd'"):
        train(opts(home, images, tmp_path / "r", optimizer="sgd"))
    with pytest.raises(CodecError, match="schedule-free optimizer takes no lr schedule"):
        train(opts(home, images, tmp_path / "r", optimizer="schedulefree", schedule="decay"))
    with pytest.raises(CodecError, match="--ema must be in"):
        train(opts(home, images, tmp_path / "r", ema=1.0))
    with pytest.raises(CodecError, match="unknown quantization 'round'"):
        train(opts(home, images, tmp_path / "r", quantization="round"))


def test_latent_warmup_is_checked_and_ramps(home, images, tmp_path):
    o = opts(home, images, tmp_path / "r", latent_warmup="16:10").resolve()
    assert o.latent_warmup == (16, 0, 10) and o.to_json()["latent_warmup"] == [16, 0, 10]
    assert [o.latent_rate_weight(s) for s in (0, 5, 9, 10, 500)] == [0.0, 0.5, 0.9, None, None]
    held = opts(home, images, tmp_path / "r", latent_warmup="16:4:10").resolve()
    assert held.latent_warmup == (16, 4, 10)
    assert [held.latent_rate_weight(s) for s in (0, 3, 4, 9, 13, 14, 500)] == [0.0, 0.0, 0.0, 0.5, 0.9, None, None]
    assert opts(home, images, tmp_path / "r").resolve().latent_rate_weight(0) is None
    for bad in ("16", "16:0", "x:10", "0:10", "-1:5", "16:-1:10", "16:4:0", "16:1:2:3"):
        with pytest.raises(CodecError, match="--latent-warmup must be FROM:RAMP or FROM:HOLD:RAMP"):
            opts(home, images, tmp_path / "r", latent_warmup=bad)
    with pytest.raises(CodecError, match=r"--latent-warmup 24:0:10: the first warmed channel must lie in 1\.\.23"):
        opts(home, images, tmp_path / "r", latent_warmup="24:10").resolve()


@pytest.mark.parametrize("step", [0, 3, 8])
def test_latent_warmup_weighs_the_warmed_channels_bits(home, images, tmp_path, step):
    """The loss of a step is bpp − (1 − w)·bits of channels FROM.. + λ·255²·MSE, w = step / STEPS;
    the logged bpp is the whole rate."""
    import torch

    from imgcodec.models.base import bits_per_pixel
    from imgcodec.train.loop import start, train_step
    from imgcodec.train.options import Precision

    o = opts(home, images, tmp_path / "r", latent_warmup="10:8").resolve()
    t = start(o, torch.device("cpu"), Precision.FP32, resuming=False)
    x = torch.from_numpy(natural_image(32, 32, seed=3)).permute(2, 0, 1)[None].float() / 255
    torch.manual_seed(7)
    out = t.model(x, t.model.rate_point(1), quantization=o.quantization.value)
    with torch.no_grad():
        whole = bits_per_pixel(out["likelihoods"], 32 * 32)
        warmed = bits_per_pixel({"y": out["likelihoods"]["y"][:, 10:]}, 32 * 32)
        mse = torch.mean((out["x_hat"] - x) ** 2)
    w = 1.0 if step >= 8 else step / 8
    expected = whole - (1 - w) * warmed + o.lmbda * 255**2 * mse
    torch.manual_seed(7)
    loss, bpp, _, _ = train_step(t.model, t, o, x, 1, o.lmbda, Precision.FP32, 1, step).tolist()
    assert 0 < warmed < whole
    assert bpp == pytest.approx(whole.item(), rel=1e-5) and loss == pytest.approx(expected.item(), rel=1e-5)
