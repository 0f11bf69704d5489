"""The ``imgcodec`` command line: thin click commands over the Python API.

Nothing heavy is imported at start-up (``imgcodec --help`` must not import torch or numpy): every
import inside a command's function below is deferred on purpose, so each command loads only what it
needs, after its arguments are checked.  Every ``CodecError`` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import click

from .errors import CodecError, InputError, OutputError
from .models.store import DEFAULT_MODEL
from .train.options import Metric, Optimizer, Precision, Quantization, Schedule, TrainOptions


def _check_device(device: str) -> str:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CodecError("--device cuda: no CUDA device is available")
    return device


def _model_name(ctx, param, value):
    """``--model`` (one, or several where it repeats): a registered model's name; an empty one is
    an error, not the default."""
    from .models.store import default_store

    home = default_store()
    for name in (value,) if isinstance(value, str) else value or ():
        home.load_config(name)  # unknown or empty: one line, before any work
    return value


STREAM = "-"  # standard input as an input, standard output as an output


def _outputs(inputs: tuple[str, ...], output_dir: str | None, suffix: str, what: str) -> list[tuple[Path, Path]]:
    """Pair inputs with outputs: ``IN OUT`` or ``IN... -o DIR`` (``-``: stdin / stdout, single file only)."""
    if output_dir is None:
        if len(inputs) != 2:
            raise click.UsageError("give INPUT OUTPUT, or several inputs with -o/--output-dir DIR")
        return [(Path(inputs[0]), Path(inputs[1]))]
    if STREAM in inputs:
        raise click.UsageError("'-' (standard input) is for a single file: give - OUTPUT")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pairs = [(Path(i), out / (Path(i).stem + suffix)) for i in inputs]
    names = [p[1] for p in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"two inputs would write the same {what} name in {out}")
    return pairs


def _is_stream(p: Path) -> bool:
    return str(p) == STREAM


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("standard input is empty")
    return data


def _write_stdout(data: bytes) -> None:
    if sys.stdout.isatty():
        raise OutputError("refusing to write binary data to a terminal (redirect standard output)")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        from .atomic import describe

        raise OutputError(f"cannot write to standard output: {describe(exc)}") from None


class _StepBar:
    """A progress bar (tqdm, on standard error) of the steps of each refinement: a new bar for each
    image the refinement starts on (``--target-size`` refines every quality it tries)."""

    def __init__(self):
        self.bar = None

    def __call__(self, step: int, steps: int) -> None:
        from tqdm import tqdm

        if step == 1:
            self.close()
            # every step drawn (mininterval 0, miniters 1): a step takes a large fraction of a second
            self.bar = tqdm(total=steps, desc="refine", unit="step", leave=False, file=sys.stderr,
                            mininterval=0, miniters=1)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _refine_progress(steps: int):
    """A block whose refinements show their steps on standard error, when it is a terminal."""
    import contextlib

    if not steps or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from .codec import refine  # deferred: torch, which the refinement has loaded by then anyway

    bar = _StepBar()
    stack = contextlib.ExitStack()
    stack.callback(bar.close)
    stack.enter_context(refine.reporting(bar))
    return stack


def _run_batch(pairs, work, label: str) -> None:
    """Run ``work(src, dst)`` for each pair; a failed file does not stop the others, and every
    failure is reported, one line each, after the progress bar has closed."""
    if len(pairs) == 1:
        work(*pairs[0])
        return
    from tqdm import tqdm

    failures = []
    show = sys.stderr.isatty()
    with tqdm(pairs, desc=label, unit="file", disable=not show, leave=False) as bar:
        for src, dst in bar:
            try:
                work(src, dst)
            except CodecError as exc:
                failures.append((src, exc))
    for src, exc in failures:
        click.echo(f"imgcodec: {src}: {exc}", err=True)
    if failures:
        raise CodecError(f"{len(failures)} of {len(pairs)} files failed")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgcodec")
def cli() -> None:
    """imgcodec — a learned image codec: factorized-prior, scale-hyperprior, mean-scale and checkerboard-context models."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", help="Encode every INPUT into this folder as NAME.bin.")
@click.option("-q", "--quality", type=float,
              help="Quality level on the common scale, the same λ in every model (default: the model's default; "
                   "`imgcodec models` lists each model's range); fractional (e.g. 3.4) for continuous-rate models.")
@click.option("--target-size", help="Instead of -q: the highest quality whose file fits in this size (e.g. 100KB, 1.5MB).")
@click.option("--target-bpp", type=float, help="Instead of -q: the highest quality whose file fits in this many bits per pixel.")
@click.option("--model", default=None, callback=_model_name,
              help=f"Model name (default: {DEFAULT_MODEL}; `imgcodec models` lists them).")
@click.option("--refine", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="Optimize the latents for this image for STEPS steps: a smaller file at the same quality, "
                   "a slower encode (each step a pass of the model forward and back: seconds per step for a "
                   "photo; the steps are counted on a terminal); decoding is unchanged.")
@click.option("--metadata", type=click.Choice(["all", "icc", "none"]), default="all", show_default=True,
              help="What the file keeps of the image's metadata: all (ICC profile, EXIF, XMP), icc, none.")
@click.option("--to-srgb", is_flag=True, help="Convert the pixels of a colour-managed image to sRGB (no profile kept).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default=None,
              help="torch, or ONNX Runtime (no torch needed); default: $IMGCODEC_RUNTIME, else torch where installed.")
@click.option("-f", "--force", is_flag=True,
              help="Overwrite existing outputs (never an input, never a read-only file; a symlink's target is replaced).")
def encode(inputs, output_dir, quality, target_size, target_bpp, model, refine, metadata, to_srgb, device, force,
           runtime=None):
    """Compress an image: `encode IN.png OUT.bin`, or `encode A.png B.jpg -o DIR` (`-`: stdin / stdout)."""
    from .codec import files
    from .models.store import default_store

    if sum(v is not None for v in (quality, target_size, target_bpp)) > 1:
        raise click.UsageError("give one of -q/--quality, --target-size and --target-bpp")
    targets = {}
    if target_size is not None:
        from .codec.ratecontrol import parse_size

        try:
            targets["target_size"] = parse_size(target_size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--target-size") from None
    if target_bpp is not None:
        targets["target_bpp"] = target_bpp
    pairs = _outputs(inputs, output_dir, ".bin", "output")
    home = default_store().cached()  # the weights, loaded once for every file of the command
    # Everything that can be checked without torch is, before it loads: the model, the quality.
    config = home.load_config(DEFAULT_MODEL if model is None else model)
    if quality is not None:
        config.normalize_quality(quality)

    def code(img):
        from .light import dispatch as codec  # torch or ONNX Runtime loads here, once the input is known to be good

        with _refine_progress(refine):
            return codec.encode(img, quality=quality, model=model, device=_check_device(device), refine=refine,
                                runtime=runtime, store=home, **targets)

    def work(src: Path, dst: Path) -> None:
        data = files.encode_file(_read_stdin() if _is_stream(src) else src, None if _is_stream(dst) else dst,
                                 code, force, metadata, to_srgb)
        if _is_stream(dst):
            _write_stdout(data)
        if targets:  # say what the search chose
            from .format import bitstream

            s = bitstream.unpack(data, max_pixels=None)
            click.echo(f"{dst}: quality {config.from_stored(s.header.quality)}, {s.size} bytes, {s.bpp:.4f} bpp",
                       err=_is_stream(dst))

    _run_batch(pairs, work, "encode")


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", help="Decode every INPUT into this folder.")
@click.option("--format", "fmt", type=click.Choice(["png", "webp", "tiff", "bmp"]), default="png",
              show_default=True, help="Image format of outputs written with -o or to standard output.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-f", "--force", is_flag=True,
              help="Overwrite existing outputs (never an input, never a read-only file; a symlink's target is replaced).")
@click.option("--no-size-cap", is_flag=True, help="Decode images larger than the default pixel cap.")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default=None,
              help="torch, or ONNX Runtime (no torch needed); default: $IMGCODEC_RUNTIME, else torch where installed.")
def decode(inputs, output_dir, fmt, device, force, no_size_cap, runtime=None):
    """Decompress: `decode IN.bin OUT.png` (format from the extension), or `decode A.bin -o DIR` (`-`: stdin / stdout)."""
    from .codec import files
    from .format import bitstream
    from .models.store import default_store

    pairs = _outputs(inputs, output_dir, "." + fmt, "output")
    cap = None if no_size_cap else bitstream.DEFAULT_MAX_PIXELS
    home = default_store().cached()  # the weights, loaded once for every file of the command

    def code(data: bytes):
        from .light import dispatch as codec  # torch or ONNX Runtime loads here

        return codec.decode(data, device=_check_device(device), max_pixels=cap, runtime=runtime, store=home)

    def work(src: Path, dst: Path) -> None:
        notes: list[str] = []
        _, out = files.decode_file(_read_stdin() if _is_stream(src) else src, None if _is_stream(dst) else dst,
                                   code, force, cap, fmt=fmt if _is_stream(dst) else None, notes=notes, store=home)
        for note in notes:
            click.echo(f"imgcodec: note: {dst}: {note}", err=True)
        if _is_stream(dst):
            _write_stdout(out)

    _run_batch(pairs, work, "decode")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="Also the runtime that decodes here (torch or onnx).")
def info(files, verbose=False):
    """Show the header of imgcodec files: model, weights, quality, size, mode, bytes, bpp."""
    import io

    from .codec.imageio import open_input
    from .format.bitstream import read_layout
    from .models.store import default_store

    home = default_store()
    for name in files:
        # the header and the part lengths only, then the CRC32 in blocks: memory stays bounded
        with io.BytesIO(_read_stdin()) if name == STREAM else open_input(name) as f:
            s = read_layout(f, max_pixels=None)
        h = s.header
        click.echo(f"{name}:")
        click.echo(f"  model     {h.model}")
        click.echo(f"  weights   {h.weights.hex()}")
        quality = home.file_quality(h.model, h.quality)  # the header holds the position on the model's ladder
        click.echo(f"  quality   {quality}" if quality is not None
                   else f"  quality   position {h.quality} on the λ ladder of {h.model} "
                        "(not a quality of a model installed here)")
        click.echo(f"  size      {h.width}x{h.height}")
        click.echo(f"  mode      {h.mode}")
        click.echo(f"  parts     {', '.join(map(str, s.lengths))} bytes")
        click.echo(f"  metadata  {', '.join(h.metadata_names) or 'none'}")
        click.echo(f"  bytes     {s.size}")
        click.echo(f"  bpp       {s.bpp:.4f}")
        if verbose:
            from .light.dispatch import describe

            click.echo(f"  runtime   {describe(h.model, h.quality if quality is None else quality)}")


@cli.command()
def models():
    """List the models, their qualities (λ) and which have shipped weights; the default is marked.

    Qualities are on one scale: quality k is the same λ in every model whose ladder lies on it."""
    from .models import store
    from .models.config import LAMBDA_SCALE

    home = store.default_store()
    scale = ", ".join(f"{k}={v:g}" for k, v in enumerate(LAMBDA_SCALE, 1))
    click.echo(f"quality scale (λ, MSE): {scale}")
    for name, cfg in home.configs().items():
        shipped = set(home.shipped_qualities(name))
        weights = home.shipped_config(name) or cfg  # a study's weights may be narrower than the config
        hyper = "" if weights.hyper_N is None else f", hyper_N={weights.hyper_N}"
        widths = f"N={weights.N}, M={weights.M}{hyper}"
        if (weights.N, weights.M, weights.hyper_N) != (cfg.N, cfg.M, cfg.hyper_N):
            widths += f" as shipped (N={cfg.N}, M={cfg.M} in its config)"
        default = " [default model]" if name == store.DEFAULT_MODEL else ""
        click.echo(f"{name}{default}: {cfg.description} (norm {cfg.norm}, {widths}, "
                   f"default quality {cfg.default_quality})")
        if not cfg.on_scale:
            click.echo("  its λ ladder is not on the quality scale: its qualities number its levels from 1")
        if cfg.continuous:
            click.echo(f"  continuous quality {cfg.qualities.start}..{cfg.qualities.stop - 1} (hundredths), one set of weights")
        for q in cfg.qualities:
            # a continuous-rate model's one checkpoint is listed under EVERY_QUALITY, not under q
            entry = home.manifest_entry(name, store.EVERY_QUALITY if cfg.continuous else q) if q in shipped else None
            mark = "not trained" if entry is None else "shipped" + (f" ({entry['study']})" if entry.get("study") else "")
            click.echo(f"  q{q}  lambda={cfg.lmbda(q):<7g} {mark}")


@cli.command()
@click.option("--model", required=True, help="Model config name (models/NAME.toml).")
@click.option("-q", "--quality", type=int,
              help="Quality level on the common scale (`imgcodec models`); its λ comes from the config "
                   "(a continuous-rate model without -q trains every level).")
@click.option("--lambda", "lmbda", type=float, help="λ instead of a quality's.")
@click.option("--data", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training images (recursive); repeat for several: crops are drawn uniformly "
                   "over all their images, and a folder given twice weighs twice.")
@click.option("--val", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Held-out folder, validated with the real codec (repeat for several).")
@click.option("--minutes", type=float, help="Wall-clock budget (the lr decays at the recipe's fraction of it).")
@click.option("--steps", type=int, help="Step budget instead of --minutes.")
@click.option("--resume", is_flag=True, help="Continue from OUT/state.safetensors if it exists.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False),
              help="Start from this checkpoint: all of it for the same model; for a wider one, its transforms "
              "widened as the same function; for a mean-scale from a scale hyperprior, grown; otherwise "
              "g_a/g_s only (models.growth.init_from).")
@click.option("--batch-size", type=int, help="Crops per step (default: the recipe's).")
@click.option("--patch", type=int, help="Crop size in pixels, a multiple of 16 (default: the recipe's).")
@click.option("--lr", type=float,
              help="Learning rate of the network (default: the recipe's lr, or its finetune_lr with --init).")
@click.option("--metric", type=click.Choice(Metric.values()),
              help="Distortion in the loss: mse (λ·255²·MSE) or ms-ssim (λ·(1 − MS-SSIM), with --patch above 160); "
                   "default: the recipe's.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: state.safetensors (what --resume continues), metrics.csv (a row every 50 steps "
                   "and at the end) and final.safetensors.")
@click.option("--checkpoint-seconds", type=float, default=120.0, show_default=True,
              help="Write the state every so many seconds (a kill loses at most that much).")
@click.option("--val-every", type=int, default=1000, show_default=True, help="Validate every so many steps (with --val).")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes that cut the crops (0: this one).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the crops, the noise and the levels drawn.")
@click.option("--threads", type=int, help="Torch threads (default: all cores).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Under torchrun on cuda, each rank takes its own GPU.")
@click.option("--precision", type=click.Choice(Precision.values()), default="auto", show_default=True,
              help="bf16 autocast for the transforms (entropy models stay fp32); auto: bf16 where the CPU has "
                   "AMX or AVX512-BF16, or the GPU bf16.")
@click.option("--optimizer", type=click.Choice(Optimizer.values()),
              help="adam, schedulefree (schedule-free AdamW: no lr schedule) or soap (default: the recipe's).")
@click.option("--schedule", type=click.Choice(Schedule.values()),
              help="decay: lr × 0.1 for the last 15 % of the budget; constant: no decay (default: the recipe's).")
@click.option("--ema", type=float, help="Decay of a moving average of the weights, which is validated and shipped (0: none).")
@click.option("--quantization", type=click.Choice(Quantization.values()),
              help="noise: additive uniform noise; mixed: noise in the rate, rounded latents into g_s.")
@click.option("--downscale", type=float, help="Draw crops at a random scale in [DOWNSCALE, 1] (1: none).")
@click.option("--latent-warmup", metavar="FROM:[HOLD:]RAMP",
              help="The rate of latent channels FROM.. (e.g. the ones a growth along M added) enters the loss "
                   "with weight 0 for the run's first HOLD steps (default 0), then rising to 1 over RAMP "
                   "steps; with --init, those channels are first reopened (random analysis rows that "
                   "nothing reads yet).")
@click.option("--ship", is_flag=True, help="Copy the final weights into checkpoints/ and the manifest.")
def train(**kw):
    """Train one rate point (also under `torchrun --nproc_per_node=N`). Options not given take the
    model's recipe ([training] in models/NAME.toml)."""
    from .train import train as run

    _check_device(kw["device"])
    summary = run(TrainOptions(**kw))
    click.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


# --- evaluation commands ---


def _comma_list(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@cli.command("eval")
@click.option("--model", callback=_model_name,
              help="Evaluate the shipped weights of this model (see `imgcodec models`).")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Evaluate this checkpoint file instead (e.g. a run's final.safetensors).")
@click.option("-q", "--quality", "qualities", multiple=True,
              help="Quality K (repeat, or K,L,…), or 'all' (default: every shipped quality).")
@click.option("--data", required=True, type=click.Path(), help="Folder of images (recursive), e.g. Kodak.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Results file (.json).")
@click.option("--limit", type=int, help="Only the first N images (sorted by name).")
@click.option("--name", help="Curve name in the results (default: the model's).")
@click.option("--refine", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="Encode with STEPS steps of encoder-side refinement (as `encode --refine`).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing results file.")
def eval_command(model, checkpoint, qualities, data, output, limit, name, refine, device, force):
    """Measure a learned model on real bitstreams: bpp, PSNR, MS-SSIM, times per image and quality."""
    from .atomic import check_writable
    from .eval.evaluate import evaluate_model, format_summary, parse_qualities

    check_writable(Path(output), force)
    res = evaluate_model(Path(data), model=model, qualities=parse_qualities(qualities),
                         checkpoint=Path(checkpoint) if checkpoint else None,
                         device=_check_device(device), limit=limit, name=name, refine=refine)
    res.save(Path(output), force=force)
    click.echo(format_summary(res))


@cli.command()
@click.option("--codec", required=True, help="jpeg, jpeg444, webp, avif, jpeg2000 or jpegxl.")
@click.option("-q", "--quality", "--qualities", "qualities", multiple=True,
              help="Rate points (repeat, or 10,20,…; default: the codec's list, see docs/evaluation.md).")
@click.option("--data", required=True, type=click.Path(), help="Folder of images (recursive).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Results file (.json).")
@click.option("--limit", type=int, help="Only the first N images (sorted by name).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing results file.")
def baseline(codec, qualities, data, output, limit, force):
    """Measure a classical codec through Pillow, in the same results schema as `eval`."""
    from .atomic import check_writable
    from .eval import baselines
    from .eval.evaluate import format_summary

    baselines.get(codec).check_available()
    check_writable(Path(output), force)
    res = baselines.evaluate_baseline(codec, Path(data), baselines.parse_qualities(qualities), limit=limit)
    res.save(Path(output), force=force)
    click.echo(format_summary(res))


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--anchors", multiple=True, help="File of published curves (drawn dashed); repeatable.")
@click.option("--metric", type=click.Choice(["psnr", "ms-ssim"]), default="psnr", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--title", help="Figure title.")
@click.option("--xmax", type=float, help="Right end of the rate axis (bpp).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing PNG.")
def plot(files, anchors, metric, output, title, xmax, force):
    """Draw rate–distortion curves of results files (and published anchors) to a PNG."""
    from .eval.plot import plot as draw
    from .eval.results import load_all

    draw(load_all([*files, *anchors]), Path(output), metric=metric, title=title, xmax=xmax, force=force)
    click.echo(f"wrote {output}")


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--anchor", default="jpeg", show_default=True, help="Name of the curve to compare against.")
@click.option("--anchors", multiple=True, help="File of published curves to include; repeatable.")
@click.option("--metric", type=click.Choice(["psnr", "ms-ssim"]), default="psnr", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the table to this file.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
def compare(files, anchor, anchors, metric, output, force):
    """Bjøntegaard BD-rate and BD-PSNR of every curve against one, as a Markdown table."""
    from .atomic import check_writable, write_bytes_atomic
    from .eval import bdrate
    from .eval.results import dataset_note, find_curve, load_all

    if output:
        check_writable(Path(output), force)
    curves = load_all([*files, *anchors])
    ref = find_curve(curves, anchor)
    text = bdrate.markdown_table(bdrate.compare(curves, ref, metric), ref.name, metric)
    note = dataset_note(curves)
    text += f"\n\n{note}" if note else ""
    if output:
        write_bytes_atomic(Path(output), (text + "\n").encode("utf-8"), force=force)
    click.echo(text)


@cli.group("data")
def data_group():
    """Download evaluation data sets."""


@data_group.command("kodak")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--url", help="Base URL of the images (default: the r0k.us Kodak page).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
@click.option("-f", "--force", is_flag=True, help="Replace files that are not the expected images.")
def data_kodak(dest, url, timeout, force):
    """Download the 24 Kodak images into DEST and verify their sha256."""
    from .eval import datasets

    rep = datasets.download_kodak(Path(dest), base_url=url or datasets.KODAK_URL, force=force, timeout=timeout)
    click.echo(f"{dest}: {len(rep.downloaded)} downloaded, {len(rep.present)} already present, all verified")


@cli.command()
@click.option("--data", required=True, type=click.Path(), help="Kodak folder (see `imgcodec data kodak`).")
@click.option("--limit", type=int, help="Only the first N images (a quick trial; needs --results-dir and --docs-dir).")
@click.option("--model", "models", multiple=True, callback=_model_name,
              help="Models to report (default: every shipped one).")
@click.option("--codec", "codecs", multiple=True, help="Baselines (default: jpeg, webp, avif).")
@click.option("--anchor", default="jpeg", show_default=True, help="Curve the BD-rates are taken against.")
@click.option("--anchors", type=click.Path(dir_okay=False),
              help="Published curves (default: results/anchors/kodak.json for Kodak).")
@click.option("--results-dir", type=click.Path(file_okay=False), help="Default: results/<data folder name>.")
@click.option("--docs-dir", type=click.Path(file_okay=False), help="Default: docs.")
@click.option("--readme", help="README whose results block to rewrite (default: README.md; 'none': skip).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--remeasure", is_flag=True, help="Measure baselines and models again even if their result files are current.")
@click.option("--refine", multiple=True, metavar="MODEL:STEPS",
              help="Also report MODEL encoded with STEPS steps of encoder-side refinement (repeatable).")
def report(**kw):
    """Evaluate shipped models and baselines, draw the R-D plot, write docs/results.md and the README block."""
    from .eval import report as rp

    kw["device"] = _check_device(kw["device"])
    for line in rp.run(**kw, log=lambda line: click.echo(f"imgcodec: {line}", err=True)):
        click.echo(line)


# --- normalization ablation ---

@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Training images (recursive), the same for every run.  [required]")
@click.option("--eval", "eval_dir", type=click.Path(exists=True, file_okay=False),
              help="Evaluation images, e.g. Kodak (never trained on).  [required]")
@click.option("--out", default="results/ablation", show_default=True, type=click.Path(file_okay=False),
              help="Results folder: points/, one JSON per curve, summary.md/.json, rd.png.")
@click.option("--work", type=click.Path(file_okay=False), help="Training folders (default: OUT/runs).")
@click.option("--steps", type=int, help="Step budget of every run.")
@click.option("--minutes", type=float, help="Wall-clock budget of every run instead of --steps.")
@click.option("--N", "N", type=int, help="Width N of every variant (default: the configs', 64).")
@click.option("--M", "M", type=int, help="Latent width M of every variant (default: the configs', 96).")
@click.option("--norms", multiple=True, help="Norms of the main axis (default: every registered norm).")
@click.option("-q", "--qualities", multiple=True, help="Quality levels whose λ are trained (default: 3,5,7).")
@click.option("--batch-size", type=int, help="Batch size of the main axis (default: the recipe's).")
@click.option("--batch-sizes", multiple=True, help="Second axis: batch sizes (default: 2,8; 'none' skips the axis).")
@click.option("--batch-norms", multiple=True, help="Second axis: norms (default: bn,rbn,mabn,gn,frn,gdn).")
@click.option("--batch-qualities", multiple=True, help="Second axis: quality levels (default: 5).")
@click.option("--patch", type=int, help="Crop size (default: the recipe's).")
@click.option("--lr", type=float, help="Learning rate (default: the recipe's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Data-loader processes per run.")
@click.option("--threads", type=int, help="Torch threads per run (default: torch's, all cores).")
@click.option("--eval-limit", type=int, help="Evaluate on the first N images only (a trial).")
@click.option("--only", multiple=True, help="Only these runs (NORM-qQ-bB) or norms: one shard of the study.")
@click.option("--report-only", is_flag=True, help="Only rebuild curves, tables and plot from the evaluated runs.")
@click.option("--ship", is_flag=True,
              help="After the study, ship its main-axis weights (all norms but gdn) into checkpoints/ "
                   "as the variants' rate points.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def ablation(**kw):
    """Normalization ablation: train every norm under one budget, evaluate, BD-rate against gdn (resumable)."""
    from .studies import ablation as ab

    lists = {k: _comma_list(kw.pop(k)) for k in ("norms", "qualities", "batch_sizes", "batch_norms", "batch_qualities", "only")}
    ship = kw.pop("ship")
    if kw.pop("report_only"):
        ab.report(Path(kw["out"]), log=click.echo)
        if ship:
            ab.ship(Path(kw["out"]), Path(kw["work"]) if kw["work"] else None, log=click.echo)
        return
    if not kw["data"] or not kw["eval_dir"]:
        raise click.UsageError("give --data (training images) and --eval (evaluation images)")
    ints = {}
    for key in ("qualities", "batch_sizes", "batch_qualities"):
        if lists[key] and lists[key] != ["none"]:
            try:
                ints[key] = tuple(int(v) for v in lists[key])
            except ValueError:
                raise click.BadParameter(f"whole numbers expected, not {', '.join(lists[key])}", param_hint=key) from None
    if lists["batch_sizes"] == ["none"]:
        ints["batch_sizes"], lists["batch_norms"] = (), ["none"]
    work = kw.pop("work")
    opts = ab.StudyOptions(
        data=Path(kw.pop("data")), eval=Path(kw.pop("eval_dir")), out=Path(kw.pop("out")),
        work=Path(work) if work else None, device=_check_device(kw.pop("device")),
        norms=lists["norms"] or None, only=tuple(lists["only"]), **ints, **kw,
    )
    if lists["batch_norms"]:
        opts.batch_norms = () if lists["batch_norms"] == ["none"] else tuple(lists["batch_norms"])
    ab.run_study(opts, log=click.echo)
    if ship:
        ab.ship(opts.out, opts.work, log=click.echo)


# --- benchmarks ---


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Images to measure, e.g. Kodak (default: the bundled sample).")
@click.option("--limit", type=int, help="Only the first N images (sorted by name).")
@click.option("-q", "--quality", "qualities", multiple=True, type=int,
              help="Quality (repeatable; default: the model's default and its highest shipped).")
@click.option("--model", help="Model (default: factorized-gdn, the architecture of the compressai peer).")
@click.option("--reps", type=int, default=3, show_default=True, help="Timed repetitions (medians) after one warm-up.")
@click.option("--threads", type=int, help="Torch threads (default: torch's, all cores).")
@click.option("--sections", multiple=True,
              help="Some of: peer, split, flops, techniques, cli, scaling, models, train, runtimes, kernels "
                   "(default: all).")
@click.option("--scaling-mp", help="Image sizes of the scaling section in megapixels, e.g. 0.1,1,4 (default: 0.1 … 24).")
@click.option("--cli-images", type=int, default=24, show_default=True,
              help="Images in the one-call command-line timing (0: time --help only).")
@click.option("--train-steps", type=int, default=8, show_default=True, help="Steps of the training-throughput run.")
@click.option("--train-data", type=click.Path(exists=True, file_okay=False), help="Training images (default: --data).")
@click.option("--clock", type=click.Choice(["cpu", "wall"]),
              help="Clock of the in-process medians (default: cpu with one thread, else wall).")
@click.option("--no-compile", "compile_", is_flag=True, help="Skip timing torch.compile (it takes tens of seconds).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write every figure to this JSON file.")
def bench(qualities, sections, scaling_mp, json_out, compile_, **kw):
    """Speed and memory against compressai's own pipeline, CLI times, scaling, training throughput."""
    import json

    from .studies import bench as b

    opts = b.BenchOptions(qualities=list(qualities) or None, compile=not compile_, **kw)
    if sections:
        unknown = set(_comma_list(sections)) - set(b.SECTIONS)
        if unknown:
            raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))} (known: {', '.join(b.SECTIONS)})",
                                     param_hint="--sections")
        opts.sections = tuple(_comma_list(sections))
    if scaling_mp:
        try:
            opts.scaling_mp = tuple(float(v) for v in _comma_list((scaling_mp,)))
        except ValueError:
            raise click.BadParameter(f"numbers expected, not {scaling_mp}", param_hint="--scaling-mp") from None
    res = b.run(opts, log=click.echo)
    if json_out:
        from .atomic import write_bytes_atomic

        write_bytes_atomic(Path(json_out), (json.dumps(res, indent=1, default=str) + "\n").encode(), force=True)
        click.echo(f"wrote {json_out}")


# --- visual comparison at equal file size ---


@cli.command("compare-images")
@click.argument("photos", nargs=-1, required=True)
@click.option("--size", help="The file size every codec must fit in (e.g. 40KB, 1.5MB).")
@click.option("--bpp", type=float, help="Instead of --size: bits per pixel of each photo.")
@click.option("-o", "--output", default="compare.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML page to write (self-contained, works offline).")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a grid of zoomed crops to this PNG.")
@click.option("--zoom", type=click.IntRange(1, 16), default=2, show_default=True, help="Enlargement of the PNG's crops.")
@click.option("--codecs", default="jpeg,webp,avif", show_default=True, help="Classical codecs beside imgcodec.")
@click.option("--model", callback=_model_name, help=f"imgcodec model (default: {DEFAULT_MODEL}).")
@click.option("--refine", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="Encode imgcodec with STEPS steps of encoder-side refinement (as `encode --refine`).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
def compare_images(photos, size, bpp, output, png, zoom, codecs, model, refine, device, force):
    """Look at imgcodec, JPEG, WebP and AVIF at equal file size: an HTML page with a slider and zoom."""
    from .codec.ratecontrol import parse_size
    from .eval import visual

    if (size is None) == (bpp is None):
        raise click.UsageError("give one of --size and --bpp")
    if size is not None:
        try:
            size = parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--size") from None
    with _refine_progress(refine):
        lines = visual.run(photos, Path(output), size=size, bpp=bpp, png=Path(png) if png else None, force=force,
                           zoom=zoom, codecs=_comma_list((codecs,)), model=model, refine=refine,
                           device=_check_device(device))
    for line in lines:
        click.echo(line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every expected failure into one line and an exit code."""
    # Library warnings (Pillow on odd files, numpy, torch, compressai's deprecated torch.jit use)
    # are not the user's business: stderr carries only imgcodec's own lines (IMGCODEC_DEBUG shows them).
    if not os.environ.get("IMGCODEC_DEBUG"):
        warnings.simplefilter("ignore")
    if hasattr(signal, "SIGXFSZ"):  # over a file-size limit, a write fails with EFBIG instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        cli.main(args=argv, prog_name="imgcodec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("imgcodec: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CodecError as exc:
        click.echo(f"imgcodec: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("imgcodec: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the system refused something (a full disk, a closed pipe): one line, not a bug
        from .atomic import describe

        click.echo(f"imgcodec: error: {describe(exc)}" + (f": {exc.filename}" if exc.filename else ""), err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("imgcodec: error: out of memory", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("IMGCODEC_DEBUG"):
            raise
        click.echo(f"imgcodec: internal error: {type(exc).__name__}: {exc} (IMGCODEC_DEBUG=1 shows the traceback)", err=True)
        sys.exit(70)
    sys.exit(0)


if __name__ == "__main__":
    main()
