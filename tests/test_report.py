"""`imgcodec report` on a reduced set: every output written, the README block replaced, baselines
reused when nothing changed, and the guard against overwriting the real report with a partial one."""

from __future__ import annotations

import pytest
from PIL import Image

from imgcodec import InputError
from imgcodec.eval import baselines as bl
from imgcodec.eval import report as rp
from imgcodec.eval.results import load

from conftest import ROOT, natural_image

README = f"""# Project

Intro.

## Results

{rp.README_BEGIN}
old table
{rp.README_END}

## After
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data") / "kodak"
    d.mkdir()
    for i in range(3):
        Image.fromarray(natural_image(40, 48, seed=i)).save(d / f"kodim{i + 1:02d}.png")
    return d


def test_report_on_a_reduced_set(data, tmp_path):
    from imgcodec.models import store

    if not store.default_store().read_manifest():
        pytest.skip("no shipped weights")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    results, docs = tmp_path / "results", tmp_path / "docs"
    kw = dict(data=str(data), limit=2, codecs=("jpeg", "webp"), results_dir=str(results), docs_dir=str(docs),
              readme=str(readme), anchors=str(ROOT / "results" / "anchors" / "kodak.json"))
    told = []
    lines = rp.run(**kw, log=told.append)
    # each measurement is announced as it starts (the command line prints these on standard error)
    assert told[:2] == [f"measuring {name} on 2 images of kodak ({len(bl.get(name).qualities)} qualities)"
                        for name in ("jpeg", "webp")]
    assert f"wrote {results / 'jpeg.json'}" in lines and f"wrote {docs / 'kodak-rd.png'}" in lines
    assert (docs / "kodak-rd.png").read_bytes()[:4] == b"\x89PNG"
    md = (docs / "results.md").read_text()
    assert "| curve | points | BD-rate vs jpeg |" in md and "![rate–distortion](kodak-rd.png)" in md
    # a partial report regenerates only with the folders --limit requires
    assert f"imgcodec report --data KODAK_DIR --limit 2 --results-dir {results} --docs-dir {docs} --codec jpeg " \
        "--codec webp" in md
    product = {e["model"] for e in store.default_store().read_manifest() if not e.get("study")}
    for name in product:
        res = load(results / f"{name}.json")
        assert res.kind == "learned" and res.dataset["images"] == 2
    text = readme.read_text()
    assert "old table" not in text and "## After" in text and text.startswith("# Project")
    assert "![rate–distortion on kodak](docs/kodak-rd.png)" in text and "BD-rate vs jpeg" in text
    # A second run measures the baselines again only if something changed: here nothing did.
    told.clear()
    lines = rp.run(**kw, log=told.append)
    assert not any(t.startswith(("measuring jpeg", "measuring webp")) for t in told)
    assert f"reused {results / 'jpeg.json'} (same images and settings)" in lines
    # a study's weights (the ablation's variants) are the study's to report, not the README's
    assert sorted(p.stem for p in results.glob("factorized-*.json")) == sorted(n for n in product if n.startswith("factorized-"))
    for name in product:  # the same shipped weights: reused too
        assert f"reused {results / (name + '.json')} (same images and settings)" in lines
    assert not any(line.startswith("reused") for line in rp.run(**kw, remeasure=True))
    assert rp.run(**kw) and readme.read_text().count(rp.README_END) == 1


def test_partial_report_needs_explicit_folders(data):
    with pytest.raises(InputError, match="--limit makes a partial report"):
        rp.run(data=str(data), limit=1)
    with pytest.raises(InputError, match="not a folder"):
        rp.run(data=str(data / "nope"))
