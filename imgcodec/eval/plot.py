"""Rate–distortion figures: measured curves solid with markers, published curves dashed.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global backend switch),
and writes the PNG atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..atomic import check_writable, write_bytes_atomic
from .results import DISTORTION_LABELS, Curve, ResultsError


def render(curves: list[Curve], metric: str = "psnr", title: str | None = None, xmax: float | None = None) -> bytes:
    """The PNG bytes of the R-D plot of ``curves`` (distortion in dB over bpp), up to ``xmax`` bpp."""
    fig = figure(curves, metric, title, xmax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figure(curves: list[Curve], metric: str = "psnr", title: str | None = None, xmax: float | None = None):
    """The matplotlib ``Figure`` of ``render``: measured curves solid, published ones dashed, and a
    legend whose title names the dashed style only when a dashed curve is drawn."""
    # deferred: matplotlib (about 0.5 s): only drawing a figure needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = [(c, *c.xy(metric)) for c in curves]
    skipped = [c.name for c, x, _ in drawn if not x]
    drawn = [(c, x, y) for c, x, y in drawn if x]
    if not drawn:
        raise ResultsError(f"no curve has {metric} values to plot")

    fig = Figure(figsize=(11, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    measured = [d for d in drawn if not d[0].published]
    published = [d for d in drawn if d[0].published]
    palette = _palette(len(drawn))
    for i, (c, x, y) in enumerate(measured + published):
        order = sorted(range(len(x)), key=x.__getitem__)
        xs, ys = [x[k] for k in order], [y[k] for k in order]
        if c.published:
            ax.plot(xs, ys, linestyle="--", marker=".", markersize=4, linewidth=1.2, color=palette[i], label=c.name)
        else:
            ax.plot(xs, ys, linestyle="-", marker="o", markersize=5, linewidth=2.0, color=palette[i], label=c.name)
    ax.set_xlabel("rate (bits per pixel)")
    ax.set_ylabel(DISTORTION_LABELS[metric])
    ax.set_title(title or _default_title(curves, metric))
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0, right=xmax)
    if xmax is not None:  # fit the quality axis to what is shown
        shown = [v for _, x, y in drawn for u, v in zip(x, y) if u <= xmax]
        if shown:
            pad = 0.03 * (max(shown) - min(shown) or 1.0)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
    styles = (["solid: measured here"] if measured else []) + (["dashed: published"] if published else [])
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              title="\n".join(styles), title_fontsize="x-small", frameon=False, alignment="left")
    if skipped:
        fig.text(0.01, 0.005, f"without {metric} values: " + ", ".join(skipped), fontsize="x-small", alpha=0.7)
    fig.tight_layout()
    return fig


def _palette(n: int) -> list:
    """Distinct colours, strong ones first (measured curves come first): tab20's dark shades, then
    its light ones."""
    # deferred: matplotlib (about 0.5 s): only drawing a figure needs it
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(n)]


def _default_title(curves: list[Curve], metric: str) -> str:
    names = {c.dataset.get("name") for c in curves if not c.published and c.dataset.get("name")}
    where = f" on {names.pop()}" if len(names) == 1 else ""
    return f"Rate–distortion{where} ({'PSNR' if metric == 'psnr' else 'MS-SSIM'})"


def plot(curves: list[Curve], out: Path, metric: str = "psnr", title: str | None = None,
         xmax: float | None = None, force: bool = False) -> None:
    """Render and write the PNG atomically (an existing file only with ``force``)."""

    check_writable(Path(out), force)
    write_bytes_atomic(Path(out), render(curves, metric, title, xmax), force=force)
