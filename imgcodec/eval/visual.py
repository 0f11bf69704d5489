"""A visual comparison at equal file size: one offline HTML page, and a PNG grid of zoomed crops.

    imgcodec compare-images photo.png --size 40KB -o compare.html --png crops.png

For every photo, imgcodec and each classical codec (JPEG, WebP, AVIF by default) are encoded at the
highest quality whose whole file fits the target: imgcodec by ``codec.encode_to_target``
(what ``encode --target-size`` does), a classical codec by the same bisection (``ratecontrol.search``)
over its Pillow quality knob.  A ``--bpp`` target is turned into bytes per photo as the rate control
does it, and every codec gets that same byte limit.  The numbers are those of ``imgcodec eval`` and
``imgcodec baseline``: the photo as RGB (alpha dropped, grayscale as R = G = B), the imgcodec file
encoded from that array, bpp of the whole file, PSNR and MS-SSIM from ``evaluate`` on the decoded
pixels.

The page holds everything in data URIs (no network): each decoded image as a PNG (the exact
decoded pixels, whatever the browser can decode), the coded file itself as a download link, and the
figures as JSON (``<script id="imgcodec-data">``).  Views of one photo share one zoom and pan: drag
to pan, wheel to zoom, buttons for fit, 1:1, 2×, 4× and the detail crop; a before/after slider
shows any two of the images split at the handle.  The detail crop is the square where the codecs'
errors add up most; the PNG grid shows that crop of every image, enlarged without smoothing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import check_writable, write_bytes_atomic
from ..codec import ratecontrol
from ..codec.imageio import CanonicalImage, load_rgb_array
from ..errors import CodecError, InputError
from . import baselines
from .evaluate import bpp, ms_ssim, psnr

DEFAULT_CODECS = ("jpeg", "webp", "avif")
# The Pillow quality knob each classical codec is searched over, ascending (file size grows with it).
QUALITY_RANGES = {"jpeg": (1, 95), "jpeg444": (1, 95), "webp": (0, 100), "avif": (0, 100), "jpegxl": (0, 100)}
LABELS = {"jpeg": "JPEG", "jpeg444": "JPEG 4:4:4", "webp": "WebP", "avif": "AVIF", "jpegxl": "JPEG XL"}
FILE_TYPES = {  # (extension, MIME type) of the download link
    "imgcodec": (".bin", "application/octet-stream"),
    "jpeg": (".jpg", "image/jpeg"),
    "jpeg444": (".jpg", "image/jpeg"),
    "webp": (".webp", "image/webp"),
    "avif": (".avif", "image/avif"),
    "jpegxl": (".jxl", "image/jxl"),
}
CROP_SIDE = 128
EDGE = 8  # pixels at each side of a photo that the detail crop leaves out (see detail_crop)
ZOOM = 2


@dataclass
class Coded:
    """One codec's file of one photo, its decoded pixels and their figures."""

    key: str  # "imgcodec" or a baseline name
    label: str
    quality: int | float
    data: bytes
    rgb: np.ndarray  # decoded (H, W, 3) uint8
    bpp: float
    psnr: float
    ms_ssim: float | None

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass
class PhotoComparison:
    name: str
    rgb: np.ndarray  # the original as the codecs saw it
    limit: int  # bytes every file fits in
    coded: list[Coded]
    crop: tuple[int, int, int, int]  # x, y, width, height of the detail crop

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def check_codecs(codecs: Sequence[str]) -> list[str]:
    """The classical codecs by name, each one that can be searched by quality and is available."""

    names = []
    for name in codecs:
        base = baselines.get(name)
        if base.name not in QUALITY_RANGES:
            raise InputError(f"{base.name} cannot be compared at a size: its knob is a {base.knob} "
                             f"(use one of {', '.join(QUALITY_RANGES)})")
        base.check_available()
        if base.name not in names:
            names.append(base.name)
    return names


def _scored(key: str, label: str, quality, data: bytes, decoded: np.ndarray, original: np.ndarray) -> Coded:
    h, w = original.shape[:2]
    return Coded(key, label, quality, data, decoded, bpp(len(data), w, h), psnr(original, decoded),
                 ms_ssim(original, decoded))


def compare_photo(path: Path, size: int | None = None, bpp: float | None = None, model: str | None = None,
                  refine: int = 0, codecs: Sequence[str] = DEFAULT_CODECS, device: str = "cpu",
                  rgb: np.ndarray | None = None, store=None) -> PhotoComparison:
    """Every codec's file of the photo at ``path`` (or of ``rgb``) that fits ``size`` bytes or ``bpp``.
    ``store``: the ``models.store.Store`` of the model (default: ``default_store()``), held cached
    for the photo's search and decode."""
    from ..light import dispatch
    from ..models.store import DEFAULT_MODEL, default_store

    store = (store or default_store()).cached()
    path = Path(path)
    if rgb is None:
        rgb = load_rgb_array(path)
    names = check_codecs(codecs)
    torch_only = "--refine" if refine else f"--device {device}" if device != "cpu" else None
    if dispatch.resolve(None, torch_only=torch_only) == "torch":
        # deferred: torch loads once the codecs are checked
        from ..codec import api as codec

        def fitted():
            return codec.encode_to_target(CanonicalImage(rgb, None, False), model, size=size, bpp=bpp,
                                          device=device, refine=refine, store=store)

        def decoder(data):
            return codec.decode(data, device=device, store=store)
    else:
        # deferred: the light runtime (numpy, onnxruntime, numba), no torch
        from ..light import codec as light

        def fitted():
            return light.encode_to_target(CanonicalImage(rgb, None, False), model, size=size, bpp=bpp,
                                          store=store)

        def decoder(data):
            return light.decode(data, store=store)
    try:
        fit = fitted()
    except CodecError as exc:
        raise type(exc)(f"{path.name}: imgcodec: {exc}") from None
    decoded = np.asarray(decoder(fit.data).convert("RGB"))
    label = "imgcodec" + ("" if model in (None, DEFAULT_MODEL) else f" {model}") + (f" refine {refine}" if refine else "")
    coded = [_scored("imgcodec", label, fit.quality, fit.data, decoded, rgb)]
    for name in names:
        base = baselines.get(name)
        lo, hi = QUALITY_RANGES[name]
        try:
            found = ratecontrol.search(list(range(lo, hi + 1)), lambda q: base.encode(rgb, q), fit.limit)
        except CodecError as exc:
            raise type(exc)(f"{path.name}: {name}: {exc}") from None
        coded.append(_scored(name, LABELS[name], found.quality, found.data, base.decode(found.data), rgb))
    return PhotoComparison(path.name, rgb, fit.limit, coded, detail_crop(rgb, [c.rgb for c in coded]))


def compare(paths: Sequence[Path], size: int | None = None, bpp: float | None = None, **kw) -> list[PhotoComparison]:
    """``compare_photo`` for each photo; every photo is read first, so a bad one stops before any coding.
    The photos share one cached store (``store=``, default ``default_store()``): the weights load once."""
    from ..models.store import default_store

    if not paths:
        raise InputError("no photos to compare")
    check_codecs(kw.get("codecs", DEFAULT_CODECS))
    arrays = [load_rgb_array(Path(p)) for p in paths]
    kw["store"] = (kw.get("store") or default_store()).cached()
    return [compare_photo(Path(p), size=size, bpp=bpp, rgb=a, **kw) for p, a in zip(paths, arrays)]


def detail_crop(original: np.ndarray, decoded: Sequence[np.ndarray], side: int = CROP_SIDE) -> tuple[int, int, int, int]:
    """The ``side``-pixel square (or the whole image, if smaller) where the squared errors of all the
    decoded images add up most: where the codecs differ, in steps of a quarter of the side.

    The outer ``EDGE`` pixels of an image large enough to spare them are left out, of the errors and
    of the crop: a photo's first or last rows and columns are often damaged (a dark scan line, a
    sensor's edge), every codec fails there, and that is not what a viewer wants to compare."""
    h, w = original.shape[:2]
    cw, ch = min(side, w), min(side, h)
    ey = EDGE if h >= ch + 2 * EDGE else 0
    ex = EDGE if w >= cw + 2 * EDGE else 0
    err = np.zeros((h, w))
    for d in decoded:
        err += ((original.astype(np.float64) - d) ** 2).sum(axis=2)
    s = np.zeros((h + 1, w + 1))
    s[1:, 1:] = err.cumsum(0).cumsum(1)
    step = max(1, min(cw, ch) // 4)
    ys = sorted({*range(ey, h - ch - ey + 1, step), h - ch - ey})
    xs = sorted({*range(ex, w - cw - ex + 1, step), w - cw - ex})
    best = max((s[y + ch, x + cw] - s[y, x + cw] - s[y + ch, x] + s[y, x], -y, -x) for y in ys for x in xs)
    return -best[2], -best[1], cw, ch


# ---------------------------------------------------------------------------------------------
# Figures as text


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f} dB"


def summary_lines(comparisons: Sequence[PhotoComparison]) -> list[str]:
    """A block of lines per photo, one per codec, in columns as wide as their longest entry."""
    lines = []
    for comp in comparisons:
        lines.append(f"{comp.name} ({comp.width}x{comp.height}), at most {comp.limit} bytes:")
        label = max(len(c.label) for c in comp.coded)
        quality = max(len(str(c.quality)) for c in comp.coded)
        db = max(len(_db(c.psnr)) for c in comp.coded)
        for c in comp.coded:
            lines.append(f"  {c.label:<{label}}  q{c.quality!s:<{quality}}  {c.nbytes:>8} bytes  {c.bpp:.4f} bpp  "
                         f"PSNR {_db(c.psnr):>{db}}  MS-SSIM {_ms(c.ms_ssim)}")
    return lines


def figures(comparisons: Sequence[PhotoComparison]) -> list[dict]:
    """The numbers of the page (its JSON block), per photo and codec."""
    return [
        {
            "photo": comp.name, "width": comp.width, "height": comp.height, "limit_bytes": comp.limit,
            "crop": list(comp.crop),
            "codecs": [{"codec": c.key, "label": c.label, "quality": c.quality, "bytes": c.nbytes, "bpp": c.bpp,
                        "psnr-rgb": None if math.isinf(c.psnr) else c.psnr, "ms-ssim-rgb": c.ms_ssim}
                       for c in comp.coded],
        }
        for comp in comparisons
    ]


# ---------------------------------------------------------------------------------------------
# The page


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;background:#f4f4f4;color:#111}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
p.note{margin:0 0 8px;color:#444;max-width:70em}
.toolbar{margin:6px 0} .toolbar button{margin-right:4px}
.view{position:relative;overflow:hidden;background:#777;cursor:grab;touch-action:none;user-select:none}
.view.panning{cursor:grabbing}
.view img{position:absolute;left:0;top:0;transform-origin:0 0;image-rendering:pixelated;max-width:none;pointer-events:none}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.panel{margin:0;background:#fff;padding:6px;border:1px solid #ccc;flex:1 1 0;min-width:160px;max-width:300px}
.panel .view{width:100%;aspect-ratio:1/1}
figcaption{font-size:12px;margin-top:4px}
.slider{background:#fff;padding:6px;border:1px solid #ccc;display:inline-block;margin-bottom:10px}
.slider .view{width:612px;height:400px}
.slider .layer{position:absolute;inset:0;overflow:hidden}
.slider .split{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 2px #000;pointer-events:none}
.slider .controls{display:flex;align-items:center;gap:8px;margin-top:4px}
.slider input[type=range]{flex:1}
"""

_SCRIPT = r"""
(function () {
  document.querySelectorAll('section.photo').forEach(function (sec) {
    var W = +sec.dataset.width, H = +sec.dataset.height;
    var crop = sec.dataset.crop.split(',').map(Number);
    var views = [].slice.call(sec.querySelectorAll('.view'));
    var panel = sec.querySelector('.panel .view');
    var st = {s: 1, cx: W / 2, cy: H / 2};  // scale (screen px per image px), image point at the views' centres
    window.addEventListener('resize', function () { apply(); });  // the panels share the width: they resize
    function apply() {
      views.forEach(function (v) {
        var x = v.clientWidth / 2 - st.cx * st.s, y = v.clientHeight / 2 - st.cy * st.s;
        v.querySelectorAll('img').forEach(function (im) {
          im.style.transform = 'translate(' + x + 'px,' + y + 'px) scale(' + st.s + ')';
        });
      });
    }
    function show(x, y, w, h) {
      st.s = Math.min(panel.clientWidth / w, panel.clientHeight / h);
      st.cx = x + w / 2; st.cy = y + h / 2; apply();
    }
    views.forEach(function (v) {
      var drag = null;
      v.addEventListener('pointerdown', function (e) {
        drag = {x: e.clientX, y: e.clientY}; v.setPointerCapture(e.pointerId); v.classList.add('panning');
      });
      v.addEventListener('pointermove', function (e) {
        if (!drag) return;
        st.cx -= (e.clientX - drag.x) / st.s; st.cy -= (e.clientY - drag.y) / st.s;
        drag = {x: e.clientX, y: e.clientY}; apply();
      });
      function end() { drag = null; v.classList.remove('panning'); }
      v.addEventListener('pointerup', end); v.addEventListener('pointercancel', end);
      v.addEventListener('wheel', function (e) {
        e.preventDefault();
        var r = v.getBoundingClientRect();
        var px = e.clientX - r.left - v.clientWidth / 2, py = e.clientY - r.top - v.clientHeight / 2;
        var ux = st.cx + px / st.s, uy = st.cy + py / st.s;  // the image point under the pointer stays
        var s = Math.max(0.05, Math.min(64, st.s * Math.pow(1.0015, -e.deltaY)));
        st.cx = ux - px / s; st.cy = uy - py / s; st.s = s; apply();
      }, {passive: false});
    });
    sec.querySelectorAll('.toolbar button').forEach(function (b) {
      b.addEventListener('click', function () {
        var z = b.dataset.zoom;
        if (z === 'fit') show(0, 0, W, H);
        else if (z === 'detail') show(crop[0], crop[1], crop[2], crop[3]);
        else { st.s = +z; apply(); }
      });
    });
    var sl = sec.querySelector('.slider');
    var sources = {};
    sec.querySelectorAll('.panel').forEach(function (p) { sources[p.dataset.key] = p.querySelector('img').src; });
    var left = sl.querySelector('select.left'), right = sl.querySelector('select.right');
    var range = sl.querySelector('input[type=range]');
    var imA = sl.querySelector('.layer.a img'), imB = sl.querySelector('.layer.b img');
    var layerB = sl.querySelector('.layer.b'), split = sl.querySelector('.split');
    function pick() { imA.src = sources[left.value]; imB.src = sources[right.value]; }
    function cut() {
      layerB.style.clipPath = 'inset(0 0 0 ' + range.value + '%)'; split.style.left = range.value + '%';
    }
    left.addEventListener('change', pick); right.addEventListener('change', pick);
    range.addEventListener('input', cut);
    pick(); cut();
    show(crop[0], crop[1], crop[2], crop[3]);
  });
})();
"""


def _caption(c: Coded, limit: int) -> str:
    return (f"<b>{html.escape(c.label)}</b> quality {c.quality}<br>"
            f"<span class=\"bytes\">{c.nbytes}</span> bytes ({_kb(c.nbytes)}, limit {limit}) · {c.bpp:.3f} bpp<br>"
            f"PSNR {_db(c.psnr)} · MS-SSIM {_ms(c.ms_ssim)}")


def _panel(key: str, label: str, png: bytes, caption: str, download: str = "") -> str:
    return (f"<figure class=\"panel\" data-key=\"{key}\"><div class=\"view\">"
            f"<img draggable=\"false\" alt=\"{html.escape(label)}\" src=\"{_data_uri('image/png', png)}\"></div>"
            f"<figcaption>{caption}{download}</figcaption></figure>")


def _section(i: int, comp: PhotoComparison) -> str:
    stem = Path(comp.name).stem
    panels = [_panel("original", "original", _png(comp.rgb),
                     f"<b>original</b> {html.escape(comp.name)}<br>{comp.width}×{comp.height} pixels")]
    for c in comp.coded:
        ext, mime = FILE_TYPES[c.key]
        link = (f"<br><a class=\"file\" data-key=\"{c.key}\" download=\"{html.escape(stem)}-{c.key}{ext}\" "
                f"href=\"{_data_uri(mime, c.data)}\">the {html.escape(c.label)} file</a>")
        panels.append(_panel(c.key, c.label, _png(c.rgb), _caption(c, comp.limit), link))
    keys = [("original", "original")] + [(c.key, c.label) for c in comp.coded]

    def options(selected: str) -> str:
        return "".join(f"<option value=\"{k}\"{' selected' if k == selected else ''}>{html.escape(lab)}</option>"
                       for k, lab in keys)

    right = comp.coded[1].key if len(comp.coded) > 1 else "original"
    x, y, w, h = comp.crop
    return f"""
<section class="photo" id="photo-{i}" data-width="{comp.width}" data-height="{comp.height}" data-crop="{x},{y},{w},{h}">
<h2>{html.escape(comp.name)}: {comp.width}×{comp.height}, every file at most {comp.limit} bytes ({_kb(comp.limit)}, {8 * comp.limit / (comp.width * comp.height):.3f} bpp)</h2>
<div class="toolbar">zoom <button data-zoom="fit">fit</button><button data-zoom="1">1:1</button><button data-zoom="2">2×</button><button data-zoom="4">4×</button><button data-zoom="detail">detail</button></div>
<div class="slider"><div class="view"><div class="layer a"><img draggable="false" alt=""></div><div class="layer b"><img draggable="false" alt=""></div><div class="split"></div></div>
<div class="controls"><select class="left" aria-label="left image">{options("imgcodec")}</select><input type="range" min="0" max="100" value="50" aria-label="split"><select class="right" aria-label="right image">{options(right)}</select></div></div>
<div class="grid">{"".join(panels)}</div>
</section>"""


def page(comparisons: Sequence[PhotoComparison], title: str | None = None) -> str:
    """The self-contained HTML page of ``comparisons``."""
    title = title or "imgcodec: " + ", ".join(c.name for c in comparisons) + " at equal file size"
    # Every "<" of the JSON as \u003c: inside <script>, neither "</script" nor "<!--" (which makes the
    # HTML parser merge the scripts that follow) can then occur, whatever a photo's name holds.
    data = json.dumps(figures(comparisons), ensure_ascii=True).replace("<", "\\u003c")
    sections = "".join(_section(i, c) for i, c in enumerate(comparisons))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Each codec at the highest quality whose whole file fits the limit. PSNR and MS-SSIM are on the
8-bit RGB pixels of the decoded file. Drag to pan and use the wheel to zoom: every view of a photo follows.
The slider shows the left image left of the handle and the right image right of it.</p>
{sections}
<script type="application/json" id="imgcodec-data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# The PNG grid of crops


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def crop_grid(comparisons: Sequence[PhotoComparison], zoom: int = ZOOM):
    """A ``PIL.Image``: a row per photo, the detail crop of the original and of every codec, enlarged
    ``zoom`` times without smoothing, with its figures below."""

    font = _font(13)
    pad, line = 8, 16
    rows = []
    for comp in comparisons:
        x, y, w, h = comp.crop
        cells = [("original", comp.name, f"{comp.width}x{comp.height}, crop at {x},{y}", comp.rgb)]
        cells += [(f"{c.label} q{c.quality}", f"{c.nbytes} bytes, {c.bpp:.3f} bpp",
                   f"{_db(c.psnr)}, MS-SSIM {_ms(c.ms_ssim)}", c.rgb) for c in comp.coded]
        cw, ch = w * zoom, h * zoom
        cell_w = max(cw, 150)
        row = Image.new("RGB", (pad + len(cells) * (cell_w + pad), pad + ch + 3 * line + pad), "white")
        draw = ImageDraw.Draw(row)
        for i, (a, b, c, rgb) in enumerate(cells):
            left = pad + i * (cell_w + pad)
            tile = Image.fromarray(np.ascontiguousarray(rgb[y:y + h, x:x + w]), "RGB").resize((cw, ch), Image.NEAREST)
            row.paste(tile, (left, pad))
            for k, text in enumerate((a, b, c)):
                draw.text((left, pad + ch + 2 + k * line), text, fill="black", font=font)
        rows.append(row)
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for r in rows:
        grid.paste(r, (0, top))
        top += r.height
    return grid


def grid_png(comparisons: Sequence[PhotoComparison], zoom: int = ZOOM) -> bytes:
    buf = io.BytesIO()
    crop_grid(comparisons, zoom).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def run(photos: Sequence[Path], output: Path, size: int | None = None, bpp: float | None = None,
        png: Path | None = None, force: bool = False, zoom: int = ZOOM, **kw) -> list[str]:
    """Compare, write the page (and the PNG grid); the lines to print."""

    outputs = [Path(output)] + ([Path(png)] if png else [])
    if len(set(outputs)) != len(outputs):
        raise InputError("the page and the PNG grid would be the same file")
    for out in outputs:
        check_writable(out, force)
    comparisons = compare([Path(p) for p in photos], size=size, bpp=bpp, **kw)
    write_bytes_atomic(Path(output), page(comparisons).encode("utf-8"), force=force)
    lines = summary_lines(comparisons) + [f"wrote {output}"]
    if png:
        write_bytes_atomic(Path(png), grid_png(comparisons, zoom), force=force)
        lines.append(f"wrote {png}")
    return lines
