"""The visual comparison at equal file size (``visual.py``, ``compare-images``)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcodec
from imgcodec.eval import visual
from imgcodec.eval.baselines import evaluate_baseline
from imgcodec.eval.evaluate import evaluate_model
from imgcodec.format import bitstream
from imgcodec.models.store import DEFAULT_MODEL

from conftest import SAMPLE, natural_image, run_main

CHROMIUM = Path("/usr/bin/chromium")
LIMIT = 4000  # bytes: every file of the two photos below fits it


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Two small crops of the bundled sample, each in its own folder (for `eval`/`baseline` on it);
    the first is large enough for MS-SSIM (161 pixels a side)."""
    root = tmp_path_factory.mktemp("photos")
    sample = Image.open(SAMPLE).convert("RGB")
    out = []
    for name, box in (("parrot", (16, 48, 208, 224)), ("corner", (240, 0, 336, 80))):
        (root / name).mkdir()
        path = root / name / f"{name}.png"
        sample.crop(box).save(path)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def made(photos, tmp_path_factory):
    """The command, run once: its page, its PNG grid and what it printed."""
    out = tmp_path_factory.mktemp("made")
    page, grid = out / "page.html", out / "grid.png"
    lines = visual.run(photos, page, size=LIMIT, png=grid)
    return page.read_text(encoding="utf-8"), grid, lines


def _figures(text: str) -> list[dict]:
    block = re.search(r'<script type="application/json" id="imgcodec-data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1).replace("<\\/", "</"))


def _data(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def _sections(text: str) -> list[str]:
    return re.findall(r'<section class="photo".*?</section>', text, re.S)


def test_page_holds_every_codec_within_the_target(made, photos):
    text, _, lines = made
    figures = _figures(text)
    assert [f["photo"] for f in figures] == [p.name for p in photos]  # several photos, one page
    # nothing from the network: every src and href is a data URI, no stylesheet or font is fetched
    assert set(re.findall(r'(?:src|href)="(\w+):', text)) == {"data"} and not re.search(r"https?:|<link|url\(|@import", text)
    for fig, section, path in zip(figures, _sections(text), photos):
        original = np.asarray(Image.open(path).convert("RGB"))
        assert fig["limit_bytes"] == LIMIT
        assert [c["codec"] for c in fig["codecs"]] == ["imgcodec", "jpeg", "webp", "avif"]
        files = dict(re.findall(r'<a class="file" data-key="(\w+)" download="[^"]+" href="(data:[^"]+)"', section))
        shown = dict(re.findall(r'<figure class="panel" data-key="(\w+)"><div class="view"><img draggable="false" '
                                r'alt="[^"]*" src="(data:image/png;base64,[^"]+)"', section))
        assert set(shown) == {"original", "imgcodec", "jpeg", "webp", "avif"}
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(_data(shown["original"])))), original)
        for c in fig["codecs"]:
            data = _data(files[c["codec"]])
            assert len(data) == c["bytes"] <= LIMIT
            assert c["bpp"] == pytest.approx(8 * len(data) / original.shape[0] / original.shape[1])
            decoded = imgcodec.decode(data) if c["codec"] == "imgcodec" else Image.open(io.BytesIO(data))
            if c["codec"] == "imgcodec":
                assert bitstream.unpack(data).header.quality == c["quality"]
            # the picture shown is the decoded file, pixel for pixel
            shown_rgb = np.asarray(Image.open(io.BytesIO(_data(shown[c["codec"]]))))
            assert np.array_equal(shown_rgb, np.asarray(decoded.convert("RGB")))
        assert f"{fig['photo']} ({original.shape[1]}x{original.shape[0]}), at most {LIMIT} bytes:" in lines
    assert figures[0]["codecs"][0]["ms-ssim-rgb"] is not None and figures[1]["codecs"][0]["ms-ssim-rgb"] is None


def test_numbers_match_eval_and_baseline(made, photos):
    """Each codec's quality, bytes, PSNR and MS-SSIM on the page are what `eval` / `baseline` measure."""
    fig = _figures(made[0])[0]
    folder = photos[0].parent
    for c in fig["codecs"]:
        if c["codec"] == "imgcodec":
            res = evaluate_model(folder, model=DEFAULT_MODEL, qualities=[c["quality"]], progress=False)  # run's model
        else:
            res = evaluate_baseline(c["codec"], folder, [c["quality"]], progress=False)
        (row,) = res.images
        assert row["bytes"] == c["bytes"], c["codec"]
        assert row["bpp"] == pytest.approx(c["bpp"], abs=1e-12)
        assert row["psnr-rgb"] == pytest.approx(c["psnr-rgb"], abs=1e-9)
        assert row["ms-ssim-rgb"] == pytest.approx(c["ms-ssim-rgb"], abs=1e-7)


def test_each_codec_is_the_highest_quality_that_fits(made, photos):
    """One quality step up no longer fits (or the search stopped within 2 % of the target)."""
    from imgcodec.eval import baselines

    fig = _figures(made[0])[1]
    rgb = np.asarray(Image.open(photos[1]).convert("RGB"))
    for c in fig["codecs"][1:]:
        lo, hi = visual.QUALITY_RANGES[c["codec"]]
        if c["quality"] < hi and c["bytes"] < 0.98 * LIMIT:
            assert len(baselines.get(c["codec"]).encode(rgb, c["quality"] + 1)) > LIMIT, c["codec"]


def test_crop_grid_png(made):
    text, grid, _ = made
    figures = _figures(text)
    with Image.open(grid) as im:
        assert im.format == "PNG"
        w = figures[0]["crop"][2] * visual.ZOOM
        assert im.width >= 5 * w  # original and four codecs side by side
        assert im.height >= sum(f["crop"][3] * visual.ZOOM for f in figures)  # a row per photo
        assert np.asarray(im.convert("L")).std() > 20


def test_detail_crop_is_where_the_errors_are():
    orig = np.full((100, 120, 3), 128, np.uint8)
    bad = orig.copy()
    bad[60:90, 70:100] = 0
    # on a grid of 8-pixel steps from visual.EDGE, and the last position before the far edge
    assert visual.detail_crop(orig, [orig, bad], side=32) == (72, 60, 32, 32)
    assert visual.detail_crop(orig[:20, :30], [orig[:20, :30]], side=32) == (0, 0, 30, 20)


def test_detail_crop_leaves_out_a_damaged_border():
    """A photo whose first row and column are damaged (every codec's error is largest there): the
    crop goes where the codecs differ inside the picture, not onto the border."""
    orig = np.full((200, 240, 3), 128, np.uint8)
    orig[0, :], orig[:, 0] = 0, 255  # a dark scan line, a bright first column
    decoded = orig.copy()
    decoded[0, :], decoded[:, 0] = 128, 128  # smoothed away by the codec: huge errors there
    decoded[120:150, 150:180] += 12  # a modest artefact inside the picture
    x, y, w, h = visual.detail_crop(orig, [decoded], side=64)
    assert (w, h) == (64, 64) and x >= visual.EDGE and y >= visual.EDGE
    assert x <= 150 and x + w >= 180 and y <= 120 and y + h >= 150  # the artefact, whole


def _comparison(name: str, labels: list[str]) -> visual.PhotoComparison:
    """A comparison made up (no coding): ``labels[i]`` for the i-th codec of imgcodec, jpeg, webp, avif."""
    rgb = natural_image(48, 64, seed=3)
    keys = ["imgcodec", "jpeg", "webp", "avif"]
    coded = [visual.Coded(k, label, q, bytes(1000 + int(10 * q)), rgb, 0.5, 30.0 + q, 0.9)
             for k, label, q in zip(keys, labels, (4.25, 31, 7, 100))]
    return visual.PhotoComparison(name, rgb, 4000, coded, (0, 0, 32, 32))


def test_summary_columns_line_up_for_long_labels():
    comp = _comparison("a.png", ["imgcodec checkerboard-gdn refine 40", "JPEG", "WebP", "AVIF"])
    lines = visual.summary_lines([comp])[1:]
    for column in (" q", " bytes", " bpp", "PSNR ", "MS-SSIM "):
        assert len({line.index(column) for line in lines}) == 1, (column, lines)


def test_a_file_name_cannot_break_the_page():
    """A photo named ``<!--<script>.png``: its name is escaped in the HTML and every ``<`` of the
    embedded JSON is, so the HTML parser can neither end the data block early (``</script``) nor
    merge the scripts after it (``<!--``); the figures read back unchanged."""
    name = "<!--<script>x</script>.png"
    text = visual.page([_comparison(name, ["imgcodec", "JPEG", "WebP", "AVIF"])])
    block = re.search(r'<script type="application/json" id="imgcodec-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in block and json.loads(block)[0]["photo"] == name
    assert text.count("<script") == 2 and text.count("</script>") == 2 and "<!--" not in text


def _chromium(*args: str, tmp_path: Path, width: int = 1280) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", f"--window-size={width},1000"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                                                  "(apt-get install chromium; .ci/run installs it)")
def test_the_page_works_whatever_the_names_and_its_panels_share_a_row(tmp_path):
    """In Chromium: with a hostile photo name the script still runs (every view is zoomed), and at a
    1400-pixel window the original and the four codecs stand in one row (none wraps alone)."""
    comp = _comparison("<!--<script>.png", ["imgcodec checkerboard-gdn refine 40", "JPEG", "WebP", "AVIF"])
    probe = ("<script>window.addEventListener('load', function () { document.title = JSON.stringify("
             "[].map.call(document.querySelectorAll('.panel'), function (p) { return p.offsetTop; })); });</script>")
    page = tmp_path / "page.html"
    page.write_text(visual.page([comp]).replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path, width=1400).stdout.decode()
    assert dom.count("transform: translate(") == 5 + 2  # the panels and the slider's two images
    tops = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom).group(1)))
    assert len(tops) == 5 and len(set(tops)) == 1, tops


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                                                  "(apt-get install chromium; .ci/run installs it)")
def test_page_renders_in_chromium(made, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(made[0], encoding="utf-8")
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", page.as_uri(), tmp_path=tmp_path)
    assert shot.exists(), r.stderr.decode(errors="replace")[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB"))
    assert rgb.shape[:2] == (1000, 1280)
    assert rgb.std() > 20 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1000, "the screenshot is blank"
    # the script ran: the slider shows two images and every view is zoomed onto the detail crop
    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path).stdout.decode()
    slider = re.search(r'<div class="slider">.*?<div class="controls">', dom, re.S).group(0)
    assert slider.count('src="data:image/png;base64,') == 2, slider[:300]
    assert dom.count("transform: translate(") == 2 * 7  # per photo: 5 panels and the slider's 2 images
    assert "clip-path: inset(0px 0px 0px 50%)" in dom


def test_cli_writes_page_and_png(capsys, photos, tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(natural_image(48, 64, seed=5)).save(tiny)
    page, grid = tmp_path / "c.html", tmp_path / "c.png"
    code, out, err = run_main(capsys, "compare-images", tiny, "--bpp", "2", "-o", page, "--png", grid,
                              "--codecs", "jpeg,webp")
    assert code == 0, err
    fig = _figures(page.read_text(encoding="utf-8"))[0]
    assert fig["limit_bytes"] == 48 * 64 * 2 // 8
    assert [c["codec"] for c in fig["codecs"]] == ["imgcodec", "jpeg", "webp"]
    assert f"wrote {page}" in out and f"wrote {grid}" in out and grid.exists()
    code, _, err = run_main(capsys, "compare-images", tiny, "--bpp", "2", "-o", page)
    assert code == 1 and err.count("\n") == 1 and "exists" in err  # no clobbering without -f


def _one_line_error(capsys, *args) -> str:
    code, out, err = run_main(capsys, "compare-images", *args)
    assert code != 0
    assert err.count("\n") == 1, err
    return err


def test_a_bad_photo_is_one_line(capsys, photos, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    page = tmp_path / "page.html"
    err = _one_line_error(capsys, photos[1], bad, "--size", "4KB", "-o", page)
    assert err.startswith("imgcodec: error:") and "bad.png" in err and "not an image" in err
    assert not page.exists()
    err = _one_line_error(capsys, tmp_path / "missing.png", "--size", "4KB", "-o", page)
    assert "missing.png" in err and "no such file" in err


def test_an_impossible_size_is_one_line(capsys, photos, tmp_path):
    page = tmp_path / "page.html"
    err = _one_line_error(capsys, photos[1], "--size", "100", "-o", page)
    assert err.startswith("imgcodec: error: corner.png: imgcodec: the target of 100 bytes is too small")
    assert not page.exists()
    for args, message in ((["--size", "lots"], "Invalid value for --size: not a size: 'lots'"),
                          ([], "give one of --size and --bpp"), (["--size", "4KB", "--bpp", "1"], "give one of")):
        code, _, err = run_main(capsys, "compare-images", photos[1], *args, "-o", page)
        assert code == 2 and message in err.splitlines()[-1]  # click's usage error, as for `encode`
    assert "jpeg2000 cannot be compared" in _one_line_error(capsys, photos[1], "--size", "4KB", "--codecs", "jpeg2000")


def test_an_impossible_size_for_a_classical_codec_names_it(photos):
    with pytest.raises(imgcodec.CodecError, match=r"^corner.png: jpeg: the target of 400 bytes is too small"):
        visual.compare_photo(photos[1], size=400, model="factorized-gdn", codecs=["jpeg"])
