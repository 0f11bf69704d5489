"""R-D plots: a real PNG, written atomically; the `plot` and `compare` commands and their errors."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from test_evaluate import run_main

from imgcodec import CodecError
from imgcodec.eval.plot import figure, plot, render
from imgcodec.eval.results import Curve, Results, ResultsError, load_curves

from conftest import ROOT, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ANCHORS = ROOT / "results" / "anchors" / "kodak.json"


def results_file(path, name, points, dataset="k"):
    rows = [
        {"image": "a.png", "width": 10, "height": 10, "quality": q, "bytes": int(b * 100 / 8), "bpp": b,
         "psnr-rgb": p, "ms-ssim-rgb": m, "ms-ssim-rgb-db": None, "encoding_time": 0.1, "decoding_time": 0.1}
        for q, (b, p, m) in enumerate(points, start=1)
    ]
    Results(name, name, "classical", {}, {"name": "kodak", "images": 1, "sha256": dataset}, rows).save(path)
    return path


@pytest.fixture()
def files(tmp_path):
    a = results_file(tmp_path / "jpeg.json", "jpeg", [(0.32, 26.0, 0.9), (0.64, 30.0, 0.95), (1.28, 34.0, 0.99)])
    b = results_file(tmp_path / "mine.json", "mine", [(0.24, 27.0, 0.92), (0.48, 31.0, 0.97), (0.96, 35.0, 0.995)])
    one = results_file(tmp_path / "one.json", "single", [(0.5, 30.0, 0.95)])
    far = results_file(tmp_path / "far.json", "far", [(0.01, 15.0, 0.5), (0.02, 17.0, 0.6)])
    return a, b, one, far


def test_render_is_a_png_of_the_requested_size(files):
    curves = [c for f in files for c in load_curves(f)] + load_curves(ANCHORS)
    data = render(curves, "psnr", xmax=2.0)
    assert data[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (1320, 720)
    assert render(curves, "ms-ssim")[:8] == PNG_MAGIC  # anchors without MS-SSIM are left out


def test_the_legend_names_only_the_styles_drawn(files):
    """'dashed: published' only where a dashed (published) curve is drawn, and it is dashed."""

    def legend(curves):
        ax = figure(curves).axes[0]
        return ax.get_legend().get_title().get_text(), {line.get_label(): line.get_linestyle() for line in ax.lines}

    measured = [c for f in files[:2] for c in load_curves(f)]
    title, styles = legend(measured)
    assert title == "solid: measured here" and set(styles.values()) == {"-"}
    published = load_curves(ANCHORS)
    title, styles = legend(measured + published)
    assert title == "solid: measured here\ndashed: published"
    assert {styles[c.name] for c in published} == {"--"}
    assert legend(published)[0] == "dashed: published"


def test_plot_writes_atomically_and_refuses_to_clobber(tmp_path, files):
    out = tmp_path / "rd.png"
    curves = load_curves(files[0])
    plot(curves, out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    out.write_bytes(b"keep")
    with pytest.raises(CodecError, match="exists"):
        plot(curves, out)
    assert out.read_bytes() == b"keep"
    plot(curves, out, force=True)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_nothing_to_plot():
    c = Curve("published", {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 31.0]}, published=True)
    with pytest.raises(ResultsError, match="no curve has ms-ssim values"):
        render([c], "ms-ssim")


def test_plot_command(tmp_path, files):
    out = tmp_path / "rd.png"
    r = run_cli("plot", str(files[0]), str(files[1]), "--anchors", str(ANCHORS), "--metric", "psnr", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_errors(capsys, tmp_path, files):
    out = tmp_path / "rd.png"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"some": "thing"}))
    code, _, err = run_main(capsys, "plot", files[0], other, "-o", out)
    assert code == 1 and err.count("\n") == 1 and "not a results file" in err
    assert not out.exists()


def test_compare_command(capsys, tmp_path, files):
    code, out, err = run_main(capsys, "compare", files[0], files[1], files[3], "--anchors", ANCHORS, "--anchor", "jpeg")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "| curve | points | BD-rate vs jpeg | BD-PSNR (dB) vs jpeg |"
    assert any(line.startswith("| jpeg | 3 | +0.0 % | +0.00 |") for line in lines)
    assert any(line.startswith("| mine | 3 | -") for line in lines)
    assert any(line.startswith("| bmshj2018-factorized (paper) (published) | 8 | -") for line in lines)
    # A curve wholly outside the anchor's range gets a clear message, not a number.
    assert "| far | 2 | no overlap | no overlap |" in out
    assert "- far: no common quality range; no common rate range with jpeg; its delta is undefined." in out
    md = tmp_path / "table.md"
    code, out2, _ = run_main(capsys, "compare", files[0], files[1], "--metric", "ms-ssim", "-o", md)
    assert code == 0 and "BD-MS-SSIM (dB) vs jpeg" in md.read_text()


def test_compare_errors(capsys, tmp_path, files):
    code, _, err = run_main(capsys, "compare", files[0], files[2], "--anchor", "jpeg")
    assert code == 1 and err.count("\n") == 1 and "single: a curve needs at least 2 rate points" in err
    code, _, err = run_main(capsys, "compare", files[0], files[1], "--anchor", "vvc")
    assert code == 1 and "no curve called 'vvc'" in err
    md = tmp_path / "t.md"
    code, _, err = run_main(capsys, "compare", files[0], files[2], "-o", md)
    assert code == 1 and not md.exists()
