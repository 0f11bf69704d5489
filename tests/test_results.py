"""The results schema: round trip, means, the foreign schemas it reads, and what it refuses."""

from __future__ import annotations

import json
import math

import pytest

from imgcodec import CodecError
from imgcodec.eval.results import (
    FORMAT,
    Results,
    ResultsError,
    dataset_note,
    find_curve,
    load,
    load_all,
    load_curves,
    ms_ssim_to_db,
    summarize,
)

from conftest import ROOT

ANCHORS = ROOT / "results" / "anchors" / "kodak.json"


def row(image, quality, nbytes, psnr, ms=None, w=10, h=8):
    return {
        "image": image, "width": w, "height": h, "quality": quality, "bytes": nbytes,
        "bpp": 8 * nbytes / (w * h), "psnr-rgb": psnr, "ms-ssim-rgb": ms, "ms-ssim-rgb-db": ms_ssim_to_db(ms),
        "encoding_time": 0.5, "decoding_time": 0.25,
    }


def sample_results(**kw) -> Results:
    rows = [row("a.png", 20, 10, 30.0, 0.9), row("b.png", 20, 30, 32.0, 0.99),
            row("a.png", 10, 5, 25.0, None), row("b.png", 10, 15, math.inf, 0.9)]
    args = dict(name="jpeg", description="JPEG", kind="classical", settings={"options": {"q": 1}},
                dataset={"name": "tiny", "images": 2, "pixels": 160, "sha256": "ab"}, images=rows)
    args.update(kw)
    return Results(**args)


def test_means_per_quality_in_ascending_order():
    r = sample_results().results
    assert r["quality"] == [10, 20]
    assert r["bpp"] == [pytest.approx(8 * 10 / 80), pytest.approx(8 * 20 / 80)]
    assert r["psnr-rgb"][1] == pytest.approx(31.0)
    assert r["ms-ssim-rgb"] == [None, pytest.approx(0.945)]  # a missing image value → no mean
    assert r["psnr-rgb"][0] == math.inf
    assert r["encoding_time"] == [0.5, 0.5]


def test_ms_ssim_db():
    assert ms_ssim_to_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_to_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_to_db(None) is None
    assert ms_ssim_to_db(1.0) == math.inf


def test_round_trip(tmp_path):
    res = sample_results()
    path = tmp_path / "jpeg.json"
    res.save(path)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON: non-finite values are null
    data = json.loads(text)
    assert data["format"] == FORMAT
    assert set(data) >= {"name", "description", "kind", "settings", "dataset", "results", "images", "environment"}
    back = load(path)
    assert back.name == "jpeg" and back.settings == res.settings and back.dataset == res.dataset
    assert back.results["bpp"] == res.results["bpp"]
    assert back.results["psnr-rgb"][0] is None  # inf written as null
    assert len(back.images) == 4 and back.images[1]["bytes"] == 30
    curve = load_curves(path)[0]
    assert not curve.published and curve.xy("psnr") == ([2.0], [31.0])


def test_refuses_existing_output(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(CodecError, match="exists"):
        sample_results().save(path)
    assert path.read_text() == "{}"


def test_reads_the_published_anchors():
    curves = load_curves(ANCHORS)
    names = [c.name for c in curves]
    assert "bmshj2018-factorized (paper)" in names and "JPEG" in names and len(curves) >= 8
    for c in curves:
        assert c.published
        x, y = c.xy("psnr")
        assert len(x) == len(c) >= 2 and all(0 < v < 10 for v in x) and all(20 < v < 50 for v in y)
        assert c.xy("ms-ssim") == ([], [])  # the anchors carry no MS-SSIM


def test_reads_compressai_result_files(tmp_path):
    path = tmp_path / "ca.json"
    path.write_text(json.dumps({"name": "bmshj2018", "description": "x",
                                "results": {"bpp": [0.2, 0.4], "psnr": [28.0, 30.0], "ms-ssim": [0.9, 0.99]}}))
    (c,) = load_curves(path)
    assert c.name == "bmshj2018" and c.published
    assert c.xy("psnr") == ([0.2, 0.4], [28.0, 30.0])
    assert c.xy("ms-ssim")[1] == [pytest.approx(10.0), pytest.approx(20.0)]


@pytest.mark.parametrize("content, message", [
    ({"format": "other-results/3", "name": "x"}, "format 'other-results/3'"),
    ({"hello": 1}, "not a results file"),
    ([1, 2, 3], "not a results file"),
    ({"name": "x", "results": {"bpp": [1, 2]}}, "no 'psnr-rgb'"),
    ({"name": "x", "results": {"bpp": [1, 2], "psnr-rgb": [30]}}, "has 1 values"),
    ({"curves": {"a": {"bpp": [1], "psnr-rgb": ["x"]}}}, "not a list of numbers"),
    ({"format": FORMAT, "name": "x"}, "without a valid"),
])
def test_other_schemas_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ResultsError, match=message) as err:
        load_curves(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_unreadable_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not a JSON"):
        load_curves(tmp_path / "bad.json")
    with pytest.raises(ResultsError, match="no such file"):
        load_curves(tmp_path / "missing.json")
    with pytest.raises(ResultsError, match=f"not an {FORMAT}"):
        load(ANCHORS)  # the strict reader takes the measured schema only


def test_names_and_lookup(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    sample_results().save(a)
    sample_results(dataset={"name": "other", "sha256": "cd"}).save(b)
    curves = load_all([a, b, ANCHORS])
    assert curves[0].name == "jpeg (a.json)" and curves[1].name == "jpeg (b.json)"
    assert find_curve(curves, "JPEG").name == "JPEG"  # exact match first
    assert find_curve(curves, "webp").name == "WebP"  # then case-insensitive
    assert find_curve(curves, "cheng").name.startswith("cheng2020")  # then a unique prefix
    with pytest.raises(ResultsError, match="several curves"):
        find_curve(curves, "bmshj2018")
    with pytest.raises(ResultsError, match="no curve called"):
        find_curve(curves, "vvc")
    assert "different image sets" in dataset_note(curves)
    assert dataset_note(load_all([a, ANCHORS])) is None


def test_summarize_matches_results_field():
    res = sample_results()
    assert summarize(res.images) == res.results


def test_shipped_anchors_are_the_shared_ones(shared_dir):
    shared = shared_dir / "anchors" / "kodak.json"
    if not shared.is_file():
        pytest.skip(f"needs {shared}")
    assert json.loads(ANCHORS.read_text()) == json.loads(shared.read_text())
