"""The normalization ablation: every norm of the registry in the same autoencoder, trained
under the same budget and measured on real bitstreams.

The study is a list of *runs*, one per (norm, quality, batch size):

* the main axis: every norm at every ``qualities`` level (the λ of that quality in the variant's
  config) at the recipe's batch size;
* the batch axis: the ``batch_norms`` (batch-dependent bn, rbn, mabn against gn, frn, gdn) at every
  ``batch_sizes`` entry, at the ``batch_qualities`` levels.  A run on both axes is trained once.

Every run uses the same trainer (``imgcodec.train.train``), training images, seed, widths, crop size,
learning rate and step (or minute) budget; only the norm (and the batch size on the second axis)
differs.  The configs trained are written to ``WORK/home/models/`` (the shipped
``models/factorized-<norm>.toml`` with the study's widths), and the trainer reads them from that
store (``TrainOptions.home``), so the record of what was trained sits beside the weights.

Resumable: a run whose result file exists with the same settings is skipped, a trained run whose
evaluation is missing is only evaluated, an interrupted training continues from its state file.
A folder that holds a run with *other* settings is refused rather than mixed.

Outputs in ``OUT`` (``results/ablation`` by default):

* ``points/<norm>-q<quality>-b<batch>.json``: one evaluated run (``imgcodec-results/1``);
* ``<norm>-b<batch>.json``: one curve per (norm, batch size), its rate points merged;
* ``summary.json`` / ``summary.md``: the study's settings, the BD-rate table against ``gdn``, the
  batch-size table; ``rd.png``: the R-D plot of the main axis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..atomic import write_bytes_atomic
from ..codec.imageio import find_images
from ..errors import CodecError, InputError
from ..eval.bdrate import compare
from ..eval.evaluate import dataset_info, evaluate_model, load_images
from ..eval.plot import plot
from ..eval.results import Results, ResultsError, load
from ..models import store
from ..models.config import ModelConfig
from ..models.store import Store, default_store

REFERENCE = "gdn"
BATCH_DEPENDENT_DEFAULT = ("bn", "rbn", "mabn")
BATCH_INDEPENDENT_DEFAULT = ("gn", "frn", "gdn")


class StudyError(CodecError):
    """The study cannot run as asked (settings clash with an existing folder, bad options)."""


def variant_name(norm: str) -> str:
    return f"factorized-{norm}"


def default_norms() -> tuple[str, ...]:
    # deferred: norms imports torch: planning a study needs none
    from ..models.norms import NORMS

    return (REFERENCE, *sorted(n for n in NORMS if n != REFERENCE))


@dataclass(frozen=True)
class Run:
    norm: str
    quality: int
    batch_size: int

    @property
    def key(self) -> str:
        return f"{self.norm}-q{self.quality}-b{self.batch_size}"

    @property
    def curve(self) -> str:
        return f"{self.norm}-b{self.batch_size}"


@dataclass
class StudyOptions:
    data: Path
    eval: Path
    out: Path = Path("results/ablation")
    work: Path | None = None  # training folders; OUT/runs by default (git-ignored)
    norms: Sequence[str] | None = None  # main axis; every registered norm by default
    qualities: Sequence[int] = (3, 5, 7)
    batch_size: int | None = None  # main axis; the recipe's by default
    batch_norms: Sequence[str] = BATCH_DEPENDENT_DEFAULT + BATCH_INDEPENDENT_DEFAULT
    batch_sizes: Sequence[int] = (2, 8)
    batch_qualities: Sequence[int] = (5,)
    N: int | None = None
    M: int | None = None
    steps: int | None = None
    minutes: float | None = None
    patch: int | None = None
    lr: float | None = None
    seed: int = 0
    workers: int = 1
    threads: int | None = None  # torch threads per run (one per core when shards run side by side)
    device: str = "cpu"
    eval_limit: int | None = None
    progress: bool = True
    only: Sequence[str] = field(default_factory=tuple)  # run keys or norms to restrict to (a shard)


# ---------------------------------------------------------------------------------------------
# Configs


def variant_config(norm: str, N: int | None = None, M: int | None = None) -> ModelConfig:
    """The shipped config of ``factorized-<norm>``, at the study's widths when given.

    GroupNorm's group count must divide the width: a narrower study keeps the config's groups where
    they divide N and otherwise takes gcd(groups, N) (recorded in the config it trains).
    """
    # deferred: norms imports torch: planning a study needs none
    from ..models.norms import get_norm

    get_norm(norm)
    config = default_store().load_config(variant_name(norm))
    if N is None and M is None:
        return config
    config = dataclasses.replace(config, N=N or config.N, M=M or config.M)
    groups = config.norm_options.get("groups")
    if groups is not None and config.N % groups:
        g = math.gcd(groups, config.N)
        config = dataclasses.replace(
            config, norm_options={**config.norm_options, "groups": g},
            description=f"{config.description} ({g} groups at N={config.N})",
        )
    return config


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise StudyError(f"cannot write {v!r} to a model config")


def config_toml(config: ModelConfig) -> str:
    """A ``models/*.toml`` text that reads back as exactly ``config``."""
    d = dataclasses.asdict(config)
    d["default_quality"] = config.stored(config.default_quality)  # a TOML holds its position on the ladder
    tables = {k: d.pop(k) for k in ("norm_options", "training")}
    d.pop("name")
    # TOML has no null: an unset optional field (hyper_N) is left out and reads back as unset
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
    for name, table in tables.items():
        if table:
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The plan


def _norm_list(names: Sequence[str]) -> list[str]:
    # deferred: norms imports torch: planning a study needs none
    from ..models.norms import get_norm

    out = []
    for n in names:
        get_norm(n)  # a clear error for an unknown name
        if n not in out:
            out.append(n)
    return out


def plan(opts: StudyOptions) -> list[Run]:
    """Every run of the study, main axis first, each once."""
    norms = _norm_list(opts.norms or default_norms())
    batch = opts.batch_size or variant_config(REFERENCE).training.batch_size
    if len(set(opts.qualities)) < 2:
        raise StudyError("the study needs at least two qualities (λ) for its R-D curves")
    runs = [Run(n, q, batch) for n in norms for q in sorted(set(opts.qualities))]
    for n in _norm_list(opts.batch_norms):
        for b in sorted(set(opts.batch_sizes)):
            for q in sorted(set(opts.batch_qualities)):
                runs.append(Run(n, q, b))
    for r in runs:
        variant_config(r.norm).check_quality(r.quality)
        if r.batch_size < 1:
            raise StudyError(f"batch size must be at least 1, not {r.batch_size}")
    runs = list(dict.fromkeys(runs))
    if opts.only:
        wanted = set(opts.only)
        runs = [r for r in runs if r.key in wanted or r.norm in wanted]
        if not runs:
            raise StudyError(f"--only {','.join(opts.only)} matches no run of the study")
    return runs


def folder_digest(folder: Path) -> dict:
    """Names the image set by its files' names and bytes (the same data for every run)."""

    files = find_images(folder)
    if not files:
        raise InputError(f"no images found in {folder}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return {"name": Path(folder).resolve().name, "images": len(files), "sha256": h.hexdigest()}


def run_settings(run: Run, config: ModelConfig, opts: StudyOptions, data: dict) -> dict:
    """Everything that fixes a run's result; a folder holding other settings is not reused."""
    recipe = config.training
    return {
        "norm": run.norm,
        "model": config.name,
        "quality": run.quality,
        "lambda": config.lmbda(run.quality),
        "batch_size": run.batch_size,
        "N": config.N,
        "M": config.M,
        "norm_options": dict(config.norm_options),
        "steps": opts.steps,
        "minutes": opts.minutes,
        "patch": opts.patch or recipe.patch,
        "lr": opts.lr if opts.lr is not None else recipe.lr,
        "seed": opts.seed,
        "data": data,
        "config": json.loads(config.to_json()),
    }


# ---------------------------------------------------------------------------------------------
# Running


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(obj, indent=1) + "\n").encode(), force=True)


def _check_folders(opts: StudyOptions) -> None:
    data, ev = Path(opts.data).resolve(), Path(opts.eval).resolve()
    for a, b in ((data, ev), (ev, data)):
        if a == b or b in a.parents:
            raise StudyError(f"the evaluation images ({opts.eval}) must not be part of the training images ({opts.data})")
    if opts.steps is None and opts.minutes is None:
        raise StudyError("give the training budget: --steps or --minutes")


def run_study(opts: StudyOptions, log=print) -> dict:
    """Train and evaluate every run not done yet, then write the curves, tables and plot."""

    _check_folders(opts)
    runs = plan(opts)
    if opts.threads:  # evaluation too, also of a run trained earlier
        # deferred: torch only to train
        import torch

        torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    work = Path(opts.work) if opts.work else out / "runs"
    home = work / "home"
    (home / "models").mkdir(parents=True, exist_ok=True)
    data = folder_digest(Path(opts.data))
    eval_set = dataset_info(Path(opts.eval), load_images(Path(opts.eval), opts.eval_limit))["sha256"]
    ref = variant_config(REFERENCE, opts.N, opts.M)
    study = run_settings(Run(REFERENCE, ref.qualities.start, 1), ref, opts, data)
    study = {k: study[k] for k in STUDY_KEYS}
    for i, run in enumerate(runs, 1):
        config = dataclasses.replace(variant_config(run.norm, opts.N, opts.M), name=variant_name(run.norm))
        settings = run_settings(run, config, opts, data)
        if {k: settings[k] for k in STUDY_KEYS} != study:
            raise StudyError(f"{config.name} differs from {REFERENCE} in more than its norm (widths or recipe)")
        point = out / "points" / f"{run.key}.json"
        if point.exists() and _point_settings(point) == (settings, eval_set):
            log(f"[{i}/{len(runs)}] {run.key}: done, skipped")
            continue
        log(f"[{i}/{len(runs)}] {run.key}: λ={settings['lambda']} N={config.N} M={config.M} batch {run.batch_size}")
        train_run(run, config, settings, opts, work, home)
        evaluate_run(run, settings, opts, work, point)
    main_batch = opts.batch_size or ref.training.batch_size
    return report(out, plan(dataclasses.replace(opts, only=())), main_batch=main_batch, study=study, log=log)


def _point_settings(path: Path) -> tuple[dict, str] | None:
    """(the run's settings, the evaluation set's sha256) of an evaluated run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["settings"]["ablation"], data["dataset"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train_run(run: Run, config: ModelConfig, settings: dict, opts: StudyOptions, work: Path, home: Path) -> Path:
    """Train one run (or continue it); returns its final checkpoint."""
    # deferred: the trainer imports torch
    from ..train import TrainOptions, train

    folder = work / run.key
    final = folder / "final.safetensors"
    record = folder / "run.json"
    if record.exists():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous != settings:
            raise StudyError(
                f"{folder} holds a run with other settings (budget, widths, data or seed differ): "
                "give another --out/--work, or delete that folder"
            )
    elif folder.exists() and any(folder.iterdir()):
        raise StudyError(f"{folder} exists without a run record: delete it or give another --work")
    if final.exists():
        return final
    _write_json(record, settings)
    write_bytes_atomic(home / "models" / f"{config.name}.toml", config_toml(config).encode("utf-8"), force=True)
    if Store.at(home).load_config(config.name) != config:  # the file must read back as the config
        raise StudyError(f"internal error: {config.name}.toml does not read back as its config")
    train(TrainOptions(
        model=config.name, data=Path(opts.data), out=folder, quality=run.quality, steps=opts.steps,
        minutes=opts.minutes, resume=True, batch_size=run.batch_size, patch=opts.patch, lr=opts.lr,
        checkpoint_seconds=60.0, seed=opts.seed, workers=opts.workers, threads=opts.threads, device=opts.device,
        progress=opts.progress, home=home,
        # fp32: the study compares norms at the arithmetic they were published with (GDN's
        # squares and BN's statistics are where bf16 would differ most)
        precision="fp32",
    ))
    return final


def evaluate_run(run: Run, settings: dict, opts: StudyOptions, work: Path, point: Path) -> dict:
    """Evaluate a trained run on the evaluation images with real bitstreams; writes ``point``."""

    final = work / run.key / "final.safetensors"
    loaded = store.load_checkpoint_file(final)
    res = evaluate_model(
        Path(opts.eval), checkpoint=final, qualities=[run.quality], device=opts.device,
        limit=opts.eval_limit, name=run.curve, progress=opts.progress,
    )
    res.settings["ablation"] = settings
    res.settings["parameters"] = sum(p.numel() for p in loaded.model.parameters())
    res.settings["train"] = {k: loaded.meta.get(k) for k in ("steps", "train_seconds", "device")}
    point.parent.mkdir(parents=True, exist_ok=True)
    res.save(point, force=True)
    return res.to_dict()


# ---------------------------------------------------------------------------------------------
# Curves and tables


def load_points(out: Path) -> list:
    return [load(p) for p in sorted((Path(out) / "points").glob("*.json"))]


def merge_curves(points: list) -> dict:
    """One ``Results`` per (norm, batch size): its rate points' per-image rows together."""

    groups: dict[str, list] = {}
    for p in points:
        groups.setdefault(p.name, []).append(p)
    curves = {}
    for name, pts in sorted(groups.items()):
        pts.sort(key=lambda r: r.settings["ablation"]["quality"])
        first = pts[0]
        common = {k: v for k, v in first.settings["ablation"].items() if k not in ("quality", "lambda", "config")}
        settings = {
            "ablation": common,
            "model": first.settings.get("model"),
            "parameters": first.settings.get("parameters"),
            "points": [
                {"quality": p.settings["ablation"]["quality"], "lambda": p.settings["ablation"]["lambda"],
                 "weights": p.settings.get("weights"), "train": p.settings.get("train")}
                for p in pts
            ],
        }
        datasets = {json.dumps(p.dataset, sort_keys=True) for p in pts}
        if len(datasets) > 1:
            raise StudyError(f"the rate points of {name} were evaluated on different image sets")
        curves[name] = Results(
            name=name, description=first.description, kind="learned", settings=settings,
            dataset=first.dataset, images=[row for p in pts for row in p.images], environment=first.environment,
        )
    return curves


def _rd_cost(point) -> float:
    """The training objective on the evaluation images with real bitstreams: mean over images of
    bpp + λ·MSE (8-bit MSE, the trainer's λ·255²·MSE on [0, 1] pixels)."""
    lmbda = point.settings["ablation"]["lambda"]
    costs = []
    for row in point.images:
        p = row["psnr-rgb"]
        mse = 0.0 if p is None or math.isinf(p) else 255.0**2 * 10 ** (-p / 10)
        costs.append(row["bpp"] + lmbda * mse)
    return sum(costs) / len(costs)


def _bd(anchor, curve) -> tuple[float | None, float | None, str]:
    """(BD-rate %, BD-PSNR dB, note) of ``curve`` against ``anchor`` (``Results``)."""

    try:
        (row,) = compare([curve.curve()], anchor.curve())
    except ResultsError as exc:
        return None, None, str(exc)
    return row["bd_rate"], row["bd_dist"], row["note"]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(v, spec: str, unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


STUDY_KEYS = ("N", "M", "steps", "minutes", "patch", "lr", "seed", "data")


def report(out: Path, runs: Sequence[Run] = (), main_batch: int | None = None, study: dict | None = None,
           log=print) -> dict:
    """Write the curves, ``summary.json``, ``summary.md`` and ``rd.png`` from the evaluated runs.

    ``study``: the settings every run shares (``STUDY_KEYS``); points of another study left in the
    folder are then ignored (and named) instead of mixed in.
    """
    # deferred: norms imports torch: planning a study needs none
    from ..models.norms import NORMS

    out = Path(out)
    points = load_points(out)
    if study is None and points:
        study = {k: points[0].settings["ablation"][k] for k in STUDY_KEYS}
    ignored = [p for p in points if {k: p.settings["ablation"].get(k) for k in STUDY_KEYS} != study]
    points = [p for p in points if p not in ignored]
    for p in ignored:
        log(f"ignored: {p.name} q{p.settings['ablation'].get('quality')} was trained with other study settings")
    if not points:
        log(f"no evaluated runs in {out / 'points'} yet")
        return {}
    curves = merge_curves(points)
    for name, res in curves.items():
        res.save(out / f"{name}.json", force=True)
    by_key = {f"{p.settings['ablation']['norm']}-q{p.settings['ablation']['quality']}-b{p.settings['ablation']['batch_size']}": p
              for p in points}
    if main_batch is None:
        main_batch = variant_config(REFERENCE).training.batch_size
    main = {n: c for n, c in sorted(curves.items(), key=lambda kv: (kv[1].settings["ablation"]["norm"] != REFERENCE, kv[0]))
            if c.settings["ablation"]["batch_size"] == main_batch}
    anchor = main.get(f"{REFERENCE}-b{main_batch}")
    first = next(iter(curves.values()))
    planned = [r.key for r in runs]
    if not planned:  # --report-only: the plan of the study that wrote the folder (ship checks it)
        try:
            planned = json.loads((out / "summary.json").read_text(encoding="utf-8"))["runs_planned"]
        except (OSError, ValueError, KeyError):
            planned = []
    summary = {
        "study": study,
        "evaluation": first.dataset,
        "main_batch_size": main_batch,
        "runs_planned": planned,
        "runs_missing": [k for k in planned if k not in by_key],
        "ignored": sorted(f"{p.name} q{p.settings['ablation'].get('quality')}" for p in ignored),
        "main": [],
        "batch": [],
    }
    for name, c in main.items():
        norm = c.settings["ablation"]["norm"]
        bd_rate, bd_psnr, note = (None, None, "the reference") if c is anchor else (
            _bd(anchor, c) if anchor else (None, None, f"no {REFERENCE} curve yet"))
        r = c.results
        summary["main"].append({
            "norm": norm, "curve": name, "batch_dependent": NORMS[norm].batch_dependent if norm in NORMS else None,
            "points": len(r["quality"]), "lambdas": [p["lambda"] for p in c.settings["points"]],
            "bpp": r["bpp"], "psnr-rgb": r["psnr-rgb"],
            "bd_rate_vs_gdn": bd_rate, "bd_psnr_vs_gdn": bd_psnr, "note": note,
            "parameters": c.settings["parameters"],
            "encoding_time": _mean(r["encoding_time"]), "decoding_time": _mean(r["decoding_time"]),
        })
    pairs = sorted({(a["norm"], a["quality"]) for a in (p.settings["ablation"] for p in points)
                    if a["batch_size"] != main_batch})
    for norm, quality in pairs:
        at = {p.settings["ablation"]["batch_size"]: p for p in points
              if (p.settings["ablation"]["norm"], p.settings["ablation"]["quality"]) == (norm, quality)}
        row = {"norm": norm, "batch_dependent": NORMS[norm].batch_dependent if norm in NORMS else None,
               "quality": quality, "lambda": next(iter(at.values())).settings["ablation"]["lambda"], "by_batch": {}}
        for b, p in sorted(at.items()):
            row["by_batch"][str(b)] = {"bpp": p.results["bpp"][0], "psnr-rgb": p.results["psnr-rgb"][0], "rd_cost": _rd_cost(p)}
        summary["batch"].append(row)
    _write_json(out / "summary.json", summary)
    md = summary_markdown(summary)
    write_bytes_atomic(out / "summary.md", md.encode("utf-8"), force=True)
    plottable = [c.curve() for c in main.values() if len(c.results["quality"]) >= 2]
    if plottable:
        title = (f"Normalization ablation on {first.dataset.get('name', '?')} "
                 f"(N={study['N']}, M={study['M']}, batch {main_batch}, "
                 + (f"{study['steps']} steps)" if study["steps"] else f"{study['minutes']} min)"))
        plot(plottable, out / "rd.png", title=title, force=True)
    log(md)
    return summary


def ship(out: Path, work: Path | None = None, log=print, into: Store | None = None) -> list[str]:
    """Ship the main-axis runs' weights as the variants' rate points, so that ``imgcodec encode
    --model factorized-rbn`` (and the decoder of its files) uses what the study trained.

    The reference is left out: ``factorized-gdn``'s shipped weights are the product's own, trained
    far longer at full width.  Only weights that are exactly the evaluated ones are shipped (their
    sha256 is in the run's result), and each manifest entry names the study (``study``: its widths
    and budget) and carries the run's Kodak-style figures from that evaluation.  ``into``: the store
    to ship into (default: ``default_store()``).
    """
    into = into or default_store()
    out = Path(out)
    work = Path(work) if work else out / "runs"
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        main_batch = summary["main_batch_size"]
    except (OSError, ValueError, KeyError) as exc:
        raise StudyError(f"no study summary in {out} ({exc.__class__.__name__}): run the study first") from None
    if summary.get("runs_missing"):
        raise StudyError(f"the study in {out} is incomplete ({', '.join(summary['runs_missing'])}): finish it before shipping")
    shipped = []
    for point in load_points(out):
        a = point.settings["ablation"]
        if a["batch_size"] != main_batch or a["norm"] == REFERENCE:
            continue
        key = Run(a["norm"], a["quality"], a["batch_size"]).key
        final = work / key / "final.safetensors"
        if not final.exists():
            raise StudyError(f"{final} is missing: the weights of {key} cannot be shipped")
        evaluated = point.settings["weights"][str(a["quality"])]["sha256"]
        if store.sha256_file(final) != evaluated:
            raise StudyError(f"{final} is not the checkpoint that was evaluated for {key}: evaluate it again")
        meta = store.load_checkpoint_file(final, expected_sha256=evaluated).meta
        bpp, psnr = point.results["bpp"][0], point.results["psnr-rgb"][0]
        extra = {
            "data": f"{a['data']['name']}/ ({a['data']['images']} images)",
            "study": (f"normalization ablation (docs/ablation.md): N={a['N']}, M={a['M']}, batch {a['batch_size']}, "
                      + (f"{a['steps']} steps" if a["steps"] else f"{a['minutes']} minutes")),
            point.dataset.get("name", "eval"): {"bpp": round(bpp, 4), "psnr": None if psnr is None else round(psnr, 3)},
        }
        meta = {k: meta[k] for k in ("lambda", "metric", "steps", "train_seconds", "device") if k in meta}
        name = into.ship(final, variant_name(a["norm"]), a["quality"], meta, extra)
        log(f"shipped {key} as checkpoints/{name}")
        shipped.append(name)
    return shipped


def summary_markdown(s: dict) -> str:
    st = s["study"]
    budget = f"{st['steps']} steps" if st["steps"] else f"{st['minutes']} minutes"
    ev = s["evaluation"]
    lines = [
        "# Normalization ablation: results",
        "",
        f"Factorized-prior autoencoder, N={st['N']}, M={st['M']}; every run {budget}, crops {st['patch']}², "
        f"lr {st['lr']}, seed {st['seed']}, training images {st['data']['name']}/ ({st['data']['images']} images); "
        f"evaluated with real bitstreams on {ev.get('name', '?')} ({ev.get('images', '?')} images).",
        "",
    ]
    if s["runs_missing"]:
        lines += [f"**Incomplete:** {len(s['runs_missing'])} of {len(s['runs_planned'])} runs not evaluated yet "
                  f"({', '.join(s['runs_missing'])}).", ""]
    lines += [
        f"## Every norm at batch size {s['main_batch_size']} (BD against {REFERENCE})",
        "",
        "| norm | batch-dependent | points | BD-rate vs gdn | BD-PSNR vs gdn (dB) | parameters "
        "| encode (s/img) | decode (s/img) | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in s["main"]:
        dep = {True: "yes", False: "no", None: "?"}[r["batch_dependent"]]
        lines.append(
            f"| {r['norm']} | {dep} | {r['points']} | {_fmt(r['bd_rate_vs_gdn'], '+.1f', ' %')} | "
            f"{_fmt(r['bd_psnr_vs_gdn'], '+.2f')} | {r['parameters']:,} | {_fmt(r['encoding_time'], '.3f')} | "
            f"{_fmt(r['decoding_time'], '.3f')} | {r['note']} |"
        )
    lines += ["", "Rate points (bpp / PSNR dB):", ""]
    for r in s["main"]:
        pts = ", ".join(f"λ={l}: {_fmt(b, '.3f')} / {_fmt(p, '.2f')}" for l, b, p in zip(r["lambdas"], r["bpp"], r["psnr-rgb"]))
        lines.append(f"- {r['norm']}: {pts}")
    if s["batch"]:
        sizes = sorted({int(b) for r in s["batch"] for b in r["by_batch"]})
        lines += [
            "",
            "## Batch size (second axis)",
            "",
            "Each cell: bpp / PSNR (dB) / J, with J = bpp + λ·MSE (8-bit MSE) on the evaluation images — the "
            "trainer's objective, measured with real bitstreams; lower J is better.  ΔJ: the smallest batch "
            f"against batch {s['main_batch_size']}.",
            "",
            "| norm | batch-dependent | λ | " + " | ".join(f"batch {b}" for b in sizes) + " | ΔJ |",
            "|---|---|---:|" + "---:|" * len(sizes) + "---:|",
        ]
        for r in s["batch"]:
            dep = {True: "yes", False: "no", None: "?"}[r["batch_dependent"]]
            cells = []
            for b in sizes:
                c = r["by_batch"].get(str(b))
                cells.append("–" if c is None else f"{c['bpp']:.3f} / {_fmt(c['psnr-rgb'], '.2f')} / {c['rd_cost']:.3f}")
            small, ref = r["by_batch"].get(str(sizes[0])), r["by_batch"].get(str(s["main_batch_size"]))
            delta = None if small is None or ref is None or small is ref else (small["rd_cost"] / ref["rd_cost"] - 1) * 100
            lines.append(f"| {r['norm']} | {dep} | {r['lambda']} | " + " | ".join(cells) + f" | {_fmt(delta, '+.1f', ' %')} |")
    return "\n".join(lines) + "\n"
