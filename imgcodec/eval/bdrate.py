"""Bjøntegaard deltas: the average rate (BD-rate) and quality (BD-PSNR) gap between two R-D curves.

As in the common implementations (VCEG-M33 with the piecewise-cubic interpolation of later JVET/AOM
practice, e.g. the ``bjontegaard`` package's ``pchip`` method):

* BD-rate: log(rate) as a function of quality, each curve interpolated by a monotone piecewise cubic
  (scipy's ``PchipInterpolator``) through its points sorted by quality; the difference integrated
  exactly over the quality range both curves cover, averaged, and turned into a percentage:
  ``(exp(mean Δ log R) − 1) · 100``.  Negative = the test curve needs fewer bits for the same quality.
* BD-PSNR (or BD-MS-SSIM in dB): quality as a function of log(rate), integrated over the common
  log-rate range.  Positive = the test curve is better.

A curve shifted by a constant rate factor ``f`` gives exactly ``(f − 1) · 100`` %, a curve shifted by a
constant ``d`` dB gives exactly ``d`` (the interpolant of shifted data is the shifted interpolant).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .results import NoOverlapError, ResultsError


def _curve(xs: Sequence[float], ys: Sequence[float], what: str, distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x, as float arrays; at least two, with distinct x values (unless not
    ``distinct``)."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ResultsError(f"{what}: rates and qualities differ in length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ResultsError(f"{what}: a curve needs at least 2 rate points for a Bjøntegaard delta, it has {len(x)}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if distinct and np.any(np.diff(x) <= 0):
        raise ResultsError(f"{what}: two points of the curve have the same value {x[np.argmin(np.diff(x))]:.4g}")
    return x, y


def _log_rates(rates: Sequence[float], what: str) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64)
    if np.any(~(r > 0)):
        raise ResultsError(f"{what}: rates must be positive")
    return np.log(r)


def _mean_gap(x1, y1, x2, y2, axis: str) -> float:
    """Mean of (interpolant 2 − interpolant 1) over the x range both cover."""
    # deferred: scipy.interpolate: only a BD figure needs it
    from scipy.interpolate import PchipInterpolator

    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        raise NoOverlapError(
            f"the curves do not overlap in {axis} ([{x1[0]:.3g}, {x1[-1]:.3g}] vs [{x2[0]:.3g}, {x2[-1]:.3g}])"
        )
    i1 = PchipInterpolator(x1, y1).integrate(lo, hi)
    i2 = PchipInterpolator(x2, y2).integrate(lo, hi)
    return float((i2 - i1) / (hi - lo))


def bd_rate(anchor_rate, anchor_dist, test_rate, test_dist) -> float:
    """Average rate difference of ``test`` against ``anchor`` at equal quality, in percent."""
    xa, ya = _curve(anchor_dist, _log_rates(anchor_rate, "anchor"), "anchor")
    xt, yt = _curve(test_dist, _log_rates(test_rate, "test curve"), "test curve")
    return (math.exp(_mean_gap(xa, ya, xt, yt, "quality")) - 1.0) * 100.0


def bd_psnr(anchor_rate, anchor_dist, test_rate, test_dist) -> float:
    """Average quality difference (dB) of ``test`` against ``anchor`` at equal rate."""
    xa, ya = _curve(_log_rates(anchor_rate, "anchor"), anchor_dist, "anchor")
    xt, yt = _curve(_log_rates(test_rate, "test curve"), test_dist, "test curve")
    return _mean_gap(xa, ya, xt, yt, "rate")


def point_delta(anchor_rate, anchor_dist, rate: float, dist: float) -> tuple[float | None, float | None]:
    """A single rate point against a curve: (rate difference in % at equal quality, quality
    difference in dB at equal rate), each None where the point lies outside the anchor's range.

    The anchor is interpolated as for the Bjøntegaard deltas; for a curve of one point (a model with
    one shipped quality) this is the comparison that remains."""
    # deferred: scipy.interpolate: only a BD figure needs it
    from scipy.interpolate import PchipInterpolator

    xd, yr = _curve(anchor_dist, _log_rates(anchor_rate, "anchor"), "anchor")
    xr, yd = _curve(_log_rates(anchor_rate, "anchor"), anchor_dist, "anchor")
    lr = math.log(rate)
    d_rate = (rate / math.exp(float(PchipInterpolator(xd, yr)(dist))) - 1) * 100 if xd[0] <= dist <= xd[-1] else None
    d_dist = dist - float(PchipInterpolator(xr, yd)(lr)) if xr[0] <= lr <= xr[-1] else None
    return d_rate, d_dist


# ---------------------------------------------------------------------------------------------
# The comparison table


def compare(curves, anchor, metric: str = "psnr") -> list[dict]:
    """BD-rate and BD-quality of every curve against ``anchor`` (``results.Curve`` objects).

    Rows carry ``bd_rate``/``bd_dist`` (None where the curves do not overlap, or where the curve has
    two points at one rate or one quality) and ``note``.  A curve
    with no values of ``metric`` (published anchors have no MS-SSIM) is listed as such; a curve of one
    point is an error."""
    ax, ay = anchor.xy(metric)
    _curve(ay, ax, f"{anchor.name}")  # the anchor itself must be a usable curve
    rows = []
    for c in curves:
        x, y = c.xy(metric)
        row = {"name": c.name, "published": c.published, "points": len(x), "bd_rate": None, "bd_dist": None,
               "note": "", "missing": not x}
        if not x:
            rows.append(row)
            continue
        _curve(y, x, c.name, distinct=False)
        notes, why = [], {}
        # Two points at one rate (or one quality) make no curve along that axis (tiny images: two
        # qualities can give files of the same size): that delta is left undefined, with a note.
        for key, delta, axis, values, unit in (("bd_rate", bd_rate, "quality", y, " dB" if metric == "psnr" else ""),
                                                ("bd_dist", bd_psnr, "rate", x, " bpp")):
            repeated = _repeated(values)
            if repeated is not None:
                why[key] = "undefined"
                notes.append(f"two points at the same {axis} ({repeated:.4g}{unit})")
                continue
            try:
                row[key] = delta(ax, ay, x, y)
            except NoOverlapError:
                why[key] = "no overlap"
                notes.append(f"no common {axis} range")
        row["note"] = "; ".join(notes)
        row["why"] = why
        rows.append(row)
    return rows


def _repeated(values) -> float | None:
    """A value that occurs twice among ``values`` (finite ones), or None."""
    v = np.sort(np.asarray([t for t in values if math.isfinite(t)], dtype=np.float64))
    same = np.flatnonzero(np.diff(v) == 0)
    return float(v[same[0]]) if len(same) else None


def markdown_table(rows: list[dict], anchor_name: str, metric: str = "psnr") -> str:
    dist = "BD-PSNR (dB)" if metric == "psnr" else "BD-MS-SSIM (dB)"
    lines = [
        f"| curve | points | BD-rate vs {anchor_name} | {dist} vs {anchor_name} |",
        "|---|---:|---:|---:|",
    ]

    def cell(r, key, spec, unit=""):
        v = r[key]
        return ("–" if r.get("missing") else r.get("why", {}).get(key, "no overlap")) if v is None else f"{v:{spec}}{unit}"

    for r in rows:
        name = r["name"] + (" (published)" if r["published"] else "")
        lines.append(f"| {name} | {r['points']} | {cell(r, 'bd_rate', '+.1f', ' %')} | {cell(r, 'bd_dist', '+.2f')} |")
    notes = [f"- {r['name']}: {r['note']} with {anchor_name}; its delta is undefined." for r in rows if r["note"]]
    if notes:
        lines += ["", f"Curves without a delta against {anchor_name}:", *notes]
    missing = [r["name"] for r in rows if r.get("missing")]
    if missing:
        lines += ["", f"Without {metric} values (–): {', '.join(missing)}."]
    return "\n".join(lines)
