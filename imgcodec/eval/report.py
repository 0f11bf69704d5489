"""The results report: every shipped model and the classical baselines on one image set, the R-D
plot, the BD-rate table, ``docs/results.md`` and the README's results section — one command::

    imgcodec report --data ../shared/data/kodak

Everything is measured first and written last, so a failure leaves the previous report in place.
A baseline file already in the results folder is reused when it was measured on the same images
(same names and bytes) with the same settings and library versions; a learned model's file when it
measured exactly the weights the store ships (their sha256) at every shipped quality on the same
images, with the same refinement steps: new weights are measured again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..atomic import write_bytes_atomic
from ..errors import CodecError, InputError
from ..models.store import Store, default_store, repo_root
from . import baselines as bl
from . import bdrate, plot, results
from .bdrate import point_delta
from .evaluate import dataset_info, evaluate_model, load_images
from .results import Curve, Results, ResultsError, find_curve, load_curves

DEFAULT_BASELINES = ("jpeg", "webp", "avif")
README_BEGIN = "<!-- results:begin (written by `imgcodec report`; edits here are overwritten) -->"
README_END = "<!-- results:end -->"
_BLOCK = re.compile(r"<!-- results:begin[^\n]*-->\n.*?<!-- results:end -->", re.S)


@dataclass
class Report:
    results: dict[str, Results]  # file stem → measured results
    reused: list[str]
    curves: list[Curve]
    markdown: str
    png: bytes
    readme_block: str
    notes: list[str] = field(default_factory=list)


def _previous(path: Path, dataset: dict) -> Results | None:
    """The result file at ``path`` if it is readable and measured these very images."""

    if not path.is_file():
        return None
    try:
        old = results.load(path)
    except ResultsError:
        return None
    return old if old.dataset.get("sha256") == dataset["sha256"] else None


def _reusable(path: Path, dataset: dict, settings: dict, qualities: list) -> Results | None:
    """A baseline's result file, if measured with the same settings and qualities."""
    old = _previous(path, dataset)
    same = old is not None and old.settings == settings and old.results.get("quality") == sorted(qualities)
    return old if same else None


def _reusable_model(path: Path, dataset: dict, home: Store, name: str, refine: int = 0) -> Results | None:
    """A learned model's result file, if it measured exactly the weights ``home`` ships on these
    images, with ``refine`` steps of encoder-side refinement."""

    old = _previous(path, dataset)
    if old is None or old.kind != "learned":
        return None
    shipped = {e["sha256"] for e in home.read_manifest() if e["model"] == name}
    measured = {w.get("sha256") for w in old.settings.get("weights", {}).values()}
    same = (measured == shipped and old.results.get("quality") == home.shipped_qualities(name)
            and old.settings.get("refine_steps", 0) == refine)
    return old if same else None


def parse_refined(specs: Sequence[str]) -> list[tuple[str, int]]:
    """``["hyperprior-gdn:60"]`` → ``[("hyperprior-gdn", 60)]``: models also reported with refinement."""
    out = []
    for spec in specs:
        name, _, steps = spec.partition(":")
        if not name or not steps.isdigit() or int(steps) < 1:
            raise CodecError(f"--refine {spec!r}: give MODEL:STEPS, e.g. hyperprior-gdn:60")
        out.append((name, int(steps)))
    return out


def build(
    data: Path,
    results_dir: Path,
    docs_dir: Path,
    models: Sequence[str] | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    anchors: Path | None = None,
    anchor: str = "jpeg",
    limit: int | None = None,
    device: str = "cpu",
    command: str = "",
    progress: bool | None = None,
    remeasure: bool = False,
    refined: Sequence[tuple[str, int]] = (),
    log: Callable[[str], None] | None = None,
) -> Report:
    """Measure (or reuse) every curve and build the outputs, in memory. ``log``: told of each curve
    as its measurement starts (with ``progress``, a bar counts the images on a terminal)."""
    images = load_images(data, limit)
    dataset = dataset_info(data, images)
    log = log or (lambda line: None)
    what = f"{len(images)} images of {dataset['name']}"
    home = default_store()
    if models is None:
        # A study's weights (the ablation's variants, narrower and trained briefly) are reported by
        # the study itself, not as the product's curves.
        models = sorted({e["model"] for e in home.read_manifest() if not e.get("study")})
        if not models:
            raise CodecError("no shipped models to report (checkpoints/manifest.json lists none)")
    measured: dict[str, Results] = {}
    reused = []
    for name in baselines:
        base = bl.get(name)
        old = None if remeasure else _reusable(
            Path(results_dir) / f"{base.name}.json", dataset, base.settings(), list(base.qualities))
        if old is not None:
            measured[base.name] = old
            reused.append(base.name)
        else:
            log(f"measuring {base.name} on {what} ({len(base.qualities)} qualities)")
            measured[base.name] = bl.evaluate_baseline(base.name, data, limit=limit, progress=progress)
    for name in models:
        old = None if remeasure else _reusable_model(Path(results_dir) / f"{name}.json", dataset, home, name)
        if old is not None:
            measured[name] = old
            reused.append(name)
        else:
            log(f"measuring {name} on {what}")
            measured[name] = evaluate_model(data, model=name, device=device, limit=limit, progress=progress,
                                            store=home)
    for name, steps in refined:  # the same weights, encoded with refinement: a curve of its own
        stem = f"{name}-refine{steps}"
        old = None if remeasure else _reusable_model(Path(results_dir) / f"{stem}.json", dataset, home, name, steps)
        if old is not None:
            measured[stem] = old
            reused.append(stem)
        else:
            log(f"measuring {name} with {steps} refinement steps on {what}")
            measured[stem] = evaluate_model(data, model=name, device=device, limit=limit, progress=progress,
                                            refine=steps, store=home)

    rd = Path(results_dir)
    learned = [r.curve(str(rd / f"{s}.json")) for s, r in measured.items() if r.kind == "learned"]
    classical = [r.curve(str(rd / f"{s}.json")) for s, r in measured.items() if r.kind != "learned"]
    published = load_curves(anchors) if anchors else []
    all_curves = learned + classical + published
    xmax = max([2.0] + [1.25 * max(c.xy()[0]) for c in learned if c.xy()[0]])
    png = plot.render(all_curves, "psnr", title=f"{dataset['name']} ({dataset['images']} images)", xmax=xmax)

    anchor_curve = find_curve(learned + classical, anchor)
    usable = [c for c in all_curves if len(c.xy()[0]) >= 2]
    rows = bdrate.compare(usable, anchor_curve, "psnr")
    notes = [_one_point_note(c, anchor_curve) for c in all_curves if len(c.xy()[0]) == 1]
    table = bdrate.markdown_table(rows, anchor_curve.name, "psnr")
    png_name = f"{dataset['name']}-rd.png"
    md = _results_markdown(measured, dataset, table, notes, png_name, anchors, command, reused)
    block = _readme_block(measured, table, notes, dataset, Path(docs_dir), png_name, command)
    return Report(measured, reused, all_curves, md, png, block, notes)


def _one_point_note(c: Curve, anchor: Curve) -> str:
    """What can be said of a curve with one rate point: its distance to the anchor at that point."""

    (x,), (y,) = c.xy()
    d_rate, d_dist = point_delta(*anchor.xy(), x, y)
    parts = [f"{c.name}: one rate point ({x:.3f} bpp, {y:.2f} dB), no Bjøntegaard delta"]
    if d_rate is not None:
        parts.append(f"{d_rate:+.1f} % rate against {anchor.name} at equal PSNR")
    if d_dist is not None:
        parts.append(f"{d_dist:+.2f} dB against {anchor.name} at equal rate")
    return "; ".join(parts)


def _f(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _means_table(res: Results) -> list[str]:
    r = res.results
    lines = ["| quality | bpp | PSNR (dB) | MS-SSIM (dB) | encode (s) | decode (s) |", "|---:|---:|---:|---:|---:|---:|"]
    for i, q in enumerate(r["quality"]):
        lines.append(
            f"| {q} | {_f(r['bpp'][i], '.3f')} | {_f(r['psnr-rgb'][i], '.2f')} | {_f(r['ms-ssim-rgb-db'][i], '.2f')} "
            f"| {_f(r['encoding_time'][i], '.3f')} | {_f(r['decoding_time'][i], '.3f')} |"
        )
    return lines


def _results_markdown(measured, dataset, table, notes, png_name, anchors, command, reused) -> str:
    out = [
        "# Results",
        "",
        f"Measured on `{dataset['name']}` ({dataset['images']} images, {dataset['pixels']} pixels; "
        f"image-set sha256 `{dataset['sha256'][:16]}`) from real files: bpp = 8 · file bytes / pixels, "
        "PSNR and MS-SSIM on the decoded 8-bit RGB image, means over images. "
        "How, and the file schema: [evaluation.md](evaluation.md).",
        "",
        f"Regenerate with `{command}`." if command else "",
        "",
        f"![rate–distortion]({png_name})",
        "",
        "## Bjøntegaard deltas",
        "",
        table,
        "",
        *(f"- {n}" for n in notes),
        "",
    ]
    if anchors:
        out += [
            "Published curves (dashed) are the figures of CompressAI's result files "
            "(InterDigitalInc/CompressAI, `results/image/kodak/`), averaged over the 24 Kodak images.",
            "",
        ]
    for stem, res in measured.items():
        out += [f"## {res.name}", "", res.description + ".", ""]
        if res.kind == "learned":
            w = res.settings.get("weights", {})
            out += ["Weights: " + ", ".join(f"q{q} `{v['sha256'][:12]}` (λ {v.get('lambda')})" for q, v in w.items()), ""]
        else:
            s = res.settings
            out += [f"{s.get('library')} {s.get('library_version')} via Pillow {s.get('pillow')}; "
                    f"options `{s.get('options')}`; quality knob: {s.get('quality_knob')}."
                    + (" (reused: same images and settings as the last run)" if stem in reused else ""), ""]
        out += _means_table(res) + [""]
    env = next(iter(measured.values())).environment
    out += [f"Timings: {env.get('machine')}, Python {env.get('python')}; learned models with torch "
            f"{next((r.environment.get('torch') for r in measured.values() if r.kind == 'learned'), '–')} "
            f"on {next((r.settings.get('device') for r in measured.values() if r.kind == 'learned'), '–')}.", ""]
    return "\n".join(line for line in out if line is not None)


def _readme_block(measured, table, notes, dataset, docs_dir: Path, png_name, command) -> str:
    lines = [
        README_BEGIN,
        f"![rate–distortion on {dataset['name']}]({{docs}}/{png_name})",
        "",
        table,
        "",
        *(f"- {n}" for n in notes),
        *([""] if notes else []),
        "Per-quality figures and settings: [{docs}/results.md]({docs}/results.md). "
        + (f"Regenerated by `{command}`." if command else ""),
        README_END,
    ]
    return "\n".join(lines)


def update_readme(readme: Path, block: str, docs_dir: Path) -> bool:
    """Replace the README's results block (between the markers); False where it has none."""

    text = Path(readme).read_text(encoding="utf-8")
    if not _BLOCK.search(text):
        return False
    rel = os.path.relpath(Path(docs_dir).resolve(), Path(readme).resolve().parent).replace(os.sep, "/")
    new = _BLOCK.sub(lambda _: block.replace("{docs}", rel), text, count=1)
    write_bytes_atomic(Path(readme), new.encode("utf-8"), force=True)
    return True


def write(report: Report, results_dir: Path, docs_dir: Path, readme: Path | None) -> list[str]:
    """Write every output (atomically, one by one); returns what was written."""

    results_dir, docs_dir = Path(results_dir), Path(docs_dir)
    for d in (results_dir, docs_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CodecError(f"cannot create {d}: {exc.strerror or exc}") from None
    written = []
    for stem, res in report.results.items():
        if stem not in report.reused:
            res.save(results_dir / f"{stem}.json", force=True)
            written.append(str(results_dir / f"{stem}.json"))
    png = docs_dir / f"{report.results[next(iter(report.results))].dataset['name']}-rd.png"
    write_bytes_atomic(png, report.png, force=True)
    write_bytes_atomic(docs_dir / "results.md", report.markdown.encode("utf-8"), force=True)
    written += [str(png), str(docs_dir / "results.md")]
    if readme is not None and update_readme(readme, report.readme_block, docs_dir):
        written.append(str(readme))
    return written


def run(
    data: str,
    limit: int | None = None,
    models: Sequence[str] = (),
    codecs: Sequence[str] = (),
    anchor: str = "jpeg",
    anchors: str | None = None,
    results_dir: str | None = None,
    docs_dir: str | None = None,
    readme: str | None = None,
    device: str = "cpu",
    remeasure: bool = False,
    refine: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """``imgcodec report``: resolve the default paths, build the report, write it; lines to print.
    ``log``: told of each measurement as it starts (``build``)."""

    data_path = Path(data)
    if not data_path.is_dir():
        raise InputError(f"{data} is not a folder")
    if limit is not None and (results_dir is None or docs_dir is None):
        raise InputError("--limit makes a partial report: give --results-dir and --docs-dir for it explicitly")
    root = repo_root()
    dataset_name = data_path.resolve().name
    results_dir = Path(results_dir) if results_dir else root / "results" / dataset_name
    docs_dir = Path(docs_dir) if docs_dir else root / "docs"
    if readme is None:
        readme_path = None if limit is not None else root / "README.md"
    else:
        readme_path = None if readme.lower() == "none" else Path(readme)
    if readme_path is not None and not readme_path.is_file():
        raise InputError(f"{readme_path}: no such file")
    if anchors is None:
        default = root / "results" / "anchors" / "kodak.json"
        anchors_path = default if dataset_name.lower() == "kodak" and default.is_file() else None
    else:
        anchors_path = None if anchors.lower() == "none" else Path(anchors)

    # a partial report (--limit) is regenerated only with the folders it was written to
    partial = f" --limit {limit} --results-dir {results_dir} --docs-dir {docs_dir}" if limit is not None else ""
    command = "imgcodec report --data KODAK_DIR" + partial + "".join(
        [f" --model {m}" for m in models] + [f" --codec {c}" for c in codecs] + [f" --refine {r}" for r in refine]
    )
    refined = parse_refined(refine)
    rep = build(
        data_path, results_dir, docs_dir,
        models=list(models) or None, baselines=list(codecs) or DEFAULT_BASELINES,
        anchors=anchors_path, anchor=anchor, limit=limit, device=device, command=command, remeasure=remeasure,
        refined=refined, log=log,
    )
    written = write(rep, results_dir, docs_dir, readme_path)
    lines = [f"wrote {w}" for w in written]
    lines += [f"reused {results_dir / (s + '.json')} (same images and settings)" for s in rep.reused]
    if readme_path is not None and str(readme_path) not in written:
        lines.append(f"{readme_path}: no results block ({README_BEGIN.split(' (')[0]} … {README_END}); not changed")
    return lines
