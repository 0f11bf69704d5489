"""The ``imgcodec`` command line: thin click commands over the Python API.

Nothing heavy is imported at start-up (``imgcodec --help`` must not import torch); each command
imports what it needs.  Every ``CodecError`` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import CodecError, InputError, OutputError


def _check_device(device: str) -> str:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CodecError("--device cuda: no CUDA device is available")
    return device


def _outputs(inputs: tuple[str, ...], output_dir: str | None, suffix: str, what: str) -> list[tuple[Path, Path]]:
    """Pair inputs with outputs: ``IN OUT`` or ``IN... -o DIR``."""
    if output_dir is None:
        if len(inputs) != 2:
            raise click.UsageError(f"give INPUT OUTPUT, or several inputs with -o/--output-dir DIR")
        return [(Path(inputs[0]), Path(inputs[1]))]
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pairs = [(Path(i), out / (Path(i).stem + suffix)) for i in inputs]
    names = [p[1] for p in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"two inputs would write the same {what} name in {out}")
    return pairs


def _run_batch(pairs, work, label: str) -> None:
    """Run ``work(src, dst)`` for each pair; one failure does not stop the others."""
    from tqdm import tqdm

    failures = 0
    show = len(pairs) > 1 and sys.stderr.isatty()
    for src, dst in tqdm(pairs, desc=label, unit="file", disable=not show):
        try:
            work(src, dst)
        except CodecError as exc:
            if len(pairs) == 1:
                raise
            failures += 1
            click.echo(f"imgcodec: {src}: {exc}", err=True)
    if failures:
        raise CodecError(f"{failures} of {len(pairs)} files failed")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgcodec")
def cli() -> None:
    """imgcodec — a learned image codec (Ballé factorized prior with GDN)."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", help="Encode every INPUT into this folder as NAME.bin.")
@click.option("-q", "--quality", type=int, help="Quality level (default: the model's default).")
@click.option("--model", default=None, help="Model name (see `imgcodec models`).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
def encode(inputs, output_dir, quality, model, device, force):
    """Compress an image: `encode IN.png OUT.bin`, or `encode A.png B.jpg -o DIR`."""
    from . import codec

    device = _check_device(device)
    pairs = _outputs(inputs, output_dir, ".bin", "output")
    _run_batch(
        pairs,
        lambda s, d: codec.encode_file(s, d, quality=quality, model=model, device=device, force=force),
        "encode",
    )


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", help="Decode every INPUT into this folder.")
@click.option("--format", "fmt", type=click.Choice(["png", "webp", "tiff", "bmp"]), default="png",
              show_default=True, help="Image format of outputs written with -o.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--no-size-cap", is_flag=True, help="Decode images larger than the default pixel cap.")
def decode(inputs, output_dir, fmt, device, force, no_size_cap):
    """Decompress: `decode IN.bin OUT.png` (format from the extension), or `decode A.bin -o DIR`."""
    from . import bitstream, codec

    device = _check_device(device)
    pairs = _outputs(inputs, output_dir, "." + fmt, "output")
    cap = None if no_size_cap else bitstream.DEFAULT_MAX_PIXELS
    _run_batch(
        pairs,
        lambda s, d: codec.decode_file(s, d, device=device, force=force, max_pixels=cap),
        "decode",
    )


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def info(files):
    """Show the header of imgcodec files: model, weights, quality, size, mode, bytes, bpp."""
    from .bitstream import unpack

    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise InputError(f"{name}: {exc.strerror or exc}") from None
        s = unpack(data, max_pixels=None)
        h = s.header
        click.echo(f"{name}:")
        click.echo(f"  model     {h.model}")
        click.echo(f"  weights   {h.weights.hex()}")
        click.echo(f"  quality   {h.quality}")
        click.echo(f"  size      {h.width}x{h.height}")
        click.echo(f"  mode      {h.mode}")
        click.echo(f"  parts     {', '.join(str(len(p)) for p in s.parts)} bytes")
        click.echo(f"  bytes     {s.size}")
        click.echo(f"  bpp       {s.bpp:.4f}")


@cli.command()
def models():
    """List the models, their qualities (λ) and which have shipped weights."""
    from . import store

    manifest = store.read_manifest()
    for name, cfg in store.available_configs().items():
        shipped = {e["quality"] for e in manifest if e["model"] == name}
        click.echo(f"{name}: {cfg.description} (norm {cfg.norm}, N={cfg.N}, M={cfg.M}, default quality {cfg.default_quality})")
        for q in cfg.qualities:
            mark = "shipped" if q in shipped else "not trained"
            click.echo(f"  q{q}  lambda={cfg.lmbda(q):<7g} {mark}")


@cli.command()
@click.option("--model", required=True, help="Model config name (models/NAME.toml).")
@click.option("-q", "--quality", type=int, help="Quality level; its λ comes from the config.")
@click.option("--lambda", "lmbda", type=float, help="λ instead of a quality's.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of training images (recursive).")
@click.option("--val", type=click.Path(exists=True, file_okay=False), help="Held-out folder, validated with the real codec.")
@click.option("--minutes", type=float, help="Wall-clock budget (the lr decays at the recipe's fraction of it).")
@click.option("--steps", type=int, help="Step budget instead of --minutes.")
@click.option("--resume", is_flag=True, help="Continue from OUT/state.safetensors if it exists.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), help="Fine-tune from this checkpoint.")
@click.option("--batch-size", type=int)
@click.option("--patch", type=int, help="Crop size (multiple of 16).")
@click.option("--lr", type=float)
@click.option("--metric", type=click.Choice(["mse", "ms-ssim"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (state, metrics.csv, final.safetensors).")
@click.option("--checkpoint-seconds", type=float, default=120.0, show_default=True)
@click.option("--val-every", type=int, default=1000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--ship", is_flag=True, help="Copy the final weights into checkpoints/ and the manifest.")
def train(**kw):
    """Train one rate point (also under `torchrun --nproc_per_node=N`)."""
    from .train import TrainOptions, train as run

    _check_device(kw["device"])
    for key in ("data", "val", "init", "out"):
        if kw[key] is not None:
            kw[key] = Path(kw[key])
    summary = run(TrainOptions(**kw))
    click.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


# --- evaluation commands (issue 5) ---

# --- normalization ablation (issue 6) ---

# --- benchmarks (issue 8) ---


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every expected failure into one line and an exit code."""
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
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("IMGCODEC_DEBUG"):
            raise
        click.echo(f"imgcodec: internal error: {type(exc).__name__}: {exc} (IMGCODEC_DEBUG=1 shows the traceback)", err=True)
        sys.exit(70)
    sys.exit(0)


if __name__ == "__main__":
    main()
