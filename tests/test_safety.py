"""Safe weights and bounded inputs.

* Checkpoints load only as safetensors whose sha256 matches the manifest: a pickle offered as a
  checkpoint is refused *without being executed* — its payload would create a file, and the file
  does not exist afterwards.  The real ``checkpoints/`` is never touched: tests that tamper with
  it work on a copy in a temporary store.
* The decoder refuses a header whose pixel count exceeds its cap unless told otherwise, and
  image inputs are guarded against decompression bombs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

import imgcodec
from imgcodec.errors import BitstreamError, InputError, ModelError
from imgcodec.format import bitstream
from imgcodec.models import store

from conftest import ROOT, natural_image, run_cli

MODEL = store.DEFAULT_MODEL  # the checkpoint a plain `imgcodec encode` loads


class _Payload:
    """Unpickling this creates the file ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": _Payload(marker)})


def _evil_torch_zip(marker: Path, dst: Path) -> None:
    """The format of ``torch.save``: a zip holding the same malicious pickle."""
    import torch

    torch.save({"state_dict": _Payload(marker)}, dst)


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Control experiment: the crafted files are live (in a throw-away process)."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(_evil_pickle(marker))
    code = f"import pickle; pickle.loads(open({str(tmp_path / 'evil.pkl')!r}, 'rb').read())"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent, timeout=120)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_pickle_checkpoint_file_is_refused_without_being_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    if kind == "pickle":
        path.write_bytes(_evil_pickle(marker))
    else:
        _evil_torch_zip(marker, path)
    with pytest.raises(ModelError, match="not a safetensors checkpoint"):
        store.load_checkpoint_file(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="not a safetensors checkpoint"):
        store.load_checkpoint_file(path, expected_sha256=digest)  # even with a matching hash
    assert not marker.exists()


@pytest.fixture()
def home(tmp_path):
    """A copy of models/ and checkpoints/ under a temporary store root."""
    for name in ("models", "checkpoints"):
        shutil.copytree(ROOT / name, tmp_path / name)
    yield tmp_path


def _default_entry(home: Path) -> dict:
    """The manifest entry of ``MODEL`` at its default quality (a continuous model's one checkpoint)."""
    config = store.Store.at(home).load_config(MODEL)
    entry = store.Store.at(home).manifest_entry(MODEL, store.EVERY_QUALITY if config.continuous
                                                else config.default_quality)
    assert entry is not None
    assert (home / "checkpoints" / entry["file"]).is_file()
    return entry


def _vouch_for(home: Path, file: str) -> None:
    """Rewrite the manifest of ``home`` so that its hash of ``file`` matches the file as it is now."""
    manifest = home / "checkpoints" / store.MANIFEST_NAME
    doc = json.loads(manifest.read_text())
    for e in doc["checkpoints"]:
        if e["file"] == file:
            e["sha256"] = hashlib.sha256((home / "checkpoints" / file).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(doc))


def test_tampered_shipped_checkpoint_is_refused(home):
    entry = _default_entry(home)
    path = home / "checkpoints" / entry["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest sha256"):
        store.Store.at(home).load_shipped(MODEL, entry["quality"])


def test_pickle_swapped_in_for_a_shipped_checkpoint_is_refused(home):
    entry = _default_entry(home)
    marker = home / "pwned"
    path = home / "checkpoints" / entry["file"]
    path.write_bytes(_evil_pickle(marker))
    with pytest.raises(ModelError, match="does not match its manifest sha256"):
        store.Store.at(home).load_shipped(MODEL, entry["quality"])
    # The attacker rewrites the manifest too: the hash now matches, the parser still refuses.
    _vouch_for(home, entry["file"])
    with pytest.raises(ModelError, match="not a safetensors checkpoint"):
        store.Store.at(home).load_shipped(MODEL, entry["quality"])
    assert not marker.exists()
    # And end to end, as a user would meet it: one line, exit 1, no output, nothing executed.
    src = home / "in.png"
    Image.fromarray(natural_image(16, 16)).save(src)
    r = run_cli("encode", str(src), str(home / "out.bin"), env={"IMGCODEC_HOME": str(home)})
    assert r.returncode == 1 and "not a safetensors checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (home / "out.bin").exists()
    assert not marker.exists()


def test_tampered_onnx_graph_is_refused_and_only_the_graphs_run_are_read(home):
    """The onnx runtime checks each graph against the manifest when it makes a session from it, and
    runs the bytes it checked: a flipped bit in the default model's synthesis graph leaves encoding
    alone (the encoder never reads `g_s`) and fails decoding with one line, no output, no traceback;
    `info --verbose` says so."""
    from imgcodec.light import codec as light
    from imgcodec.light.store import LightStore

    entry = _default_entry(home)
    src = home / "in.png"
    Image.fromarray(natural_image(48, 40)).save(src)
    data = light.encode(src, store=LightStore(store.Store.at(home)))
    graph = home / "checkpoints" / "onnx" / entry["onnx"]["graphs"]["g_s"]["file"]
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    graph.write_bytes(bytes(raw))
    assert light.encode(src, store=LightStore(store.Store.at(home))) == data
    with pytest.raises(ModelError, match=f"ONNX graph {graph.name} does not match its manifest sha256"):
        light.decode(data, store=LightStore(store.Store.at(home)))
    (home / "in.bin").write_bytes(data)
    env = {"IMGCODEC_HOME": str(home)}
    r = run_cli("decode", str(home / "in.bin"), str(home / "out.png"), "--runtime", "onnx", env=env)
    assert r.returncode == 1 and "does not match its manifest sha256" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (home / "out.png").exists()
    r = run_cli("info", "--verbose", str(home / "in.bin"), env=dict(env, IMGCODEC_RUNTIME="onnx"))
    assert f"ONNX graph {graph.name} does not match its manifest sha256" in r.stdout


def _tampered(home: Path, model: str, quality: int, change) -> Path:
    """The checkpoint of (model, quality) in ``home`` rewritten with ``change(tensors)`` applied and its
    manifest hash updated to match: what someone who can write the store can do."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    entry = store.Store.at(home).manifest_entry(model, quality)
    path = home / "checkpoints" / entry["file"]
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    change(tensors)
    path.write_bytes(save(tensors, metadata=meta))
    _vouch_for(home, entry["file"])
    return path


def _set(key: str, index, value):
    return lambda tensors: tensors[key].__setitem__(index, value)


UNTRUSTED = {  # name: (model, quality (its default; 0: the one checkpoint), change, what the refusal says)
    "zeroed-cdf": ("factorized-gdn", 5, lambda t: t["entropy_bottleneck._quantized_cdf"].zero_(),
                   "the entropy tables entropy_bottleneck: a table does not rise strictly from 0 to 65536"),
    "huge-cdf-length": ("factorized-gdn", 5, _set("entropy_bottleneck._cdf_length", 0, 2**30),
                        "the entropy tables entropy_bottleneck: a table length outside 3"),
    "huge-offset": ("factorized-gdn", 5, _set("entropy_bottleneck._offset", 0, -2**30),
                    "the entropy tables entropy_bottleneck: an offset beyond"),
    "nan-g_s": ("factorized-gdn", 5, _set("g_s.0.weight", (0, 0, 0, 0), float("nan")),
                "g_s.0.weight holds NaN or infinite values"),
    "gaussian-cdf": ("hyperprior-gdn", 0, _set("gaussian_conditional._quantized_cdf", (0, 1), 0),
                     "the entropy tables gaussian_conditional: a table does not rise strictly"),
    "scale-table": ("hyperprior-gdn", 0, _set("gaussian_conditional.scale_table", 0, -1.0),
                    "gaussian_conditional.scale_table holds a scale that is not positive"),
}


@pytest.mark.parametrize("case", UNTRUSTED)
def test_untrusted_entropy_tables_and_weights_are_refused_at_load(home, case):
    """Weights whose hash the manifest vouches for are still checked when they load: entropy tables
    the coder would choke on (a zero frequency killed `imgcodec encode` with SIGFPE; a table length
    past its row wrote files the decoder refused) and NaN weights (which "decoded" to a black image)
    are a one-line ``ModelError`` naming the checkpoint."""
    model, quality, change, says = UNTRUSTED[case]
    path = _tampered(home, model, quality, change)
    with pytest.raises(ModelError) as info:
        store.Store.at(home).load_shipped(model, None)
    assert str(info.value).startswith(f"checkpoint {path.name}: ") and says in str(info.value)
    assert "\n" not in str(info.value)
    from safetensors.numpy import load_file  # the same check on numpy arrays (a runtime without torch)

    with pytest.raises(ModelError, match=re.escape(says)):
        store.check_tensors(load_file(path), path.name)
    if case == "zeroed-cdf":  # end to end, in a process of its own (the SIGFPE would kill this one)
        src = home / "in.png"
        Image.fromarray(natural_image(16, 16)).save(src)
        r = run_cli("encode", str(src), str(home / "out.bin"), "--model", model, env={"IMGCODEC_HOME": str(home)})
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and path.name in r.stderr, r.stderr
        assert not (home / "out.bin").exists()


def test_the_package_never_unpickles():
    """No loader that runs pickles anywhere in the package's source."""
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False")
    offenders = [p.name for p in (ROOT / "imgcodec").glob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# Dimension cap and decompression bombs


@pytest.fixture(scope="module")
def small_file() -> bytes:
    return imgcodec.encode(Image.fromarray(natural_image(16, 16)))


def _with_size(data: bytes, width: int, height: int, payload: bytes | None = None) -> bytes:
    """``data`` claiming ``width``×``height``, its first latent part (the first decoded) replaced by ``payload``."""
    s = bitstream.unpack(data)
    header = dataclasses.replace(s.header, width=width, height=height)
    return bitstream.pack(header, [s.parts[0] if payload is None else payload, *s.parts[1:]])


def test_decoder_pixel_cap(small_file):
    with pytest.raises(BitstreamError, match="exceeds the decoder's cap of 255 pixels"):
        imgcodec.decode(small_file, max_pixels=255)
    assert imgcodec.decode(small_file, max_pixels=256).size == (16, 16)
    assert imgcodec.decode(small_file, max_pixels=None).size == (16, 16)
    side = int(bitstream.DEFAULT_MAX_PIXELS**0.5) + 1  # a lying header just over the default cap
    with pytest.raises(BitstreamError, match="cap"):
        imgcodec.decode(_with_size(small_file, side, side))
    # No cap lifts the per-side limit, which the header's 32-bit fields could otherwise exceed.
    for w, h in [(bitstream.MAX_SIDE + 1, 1), (1, 2**32 - 1)]:
        with pytest.raises(BitstreamError, match="image size"):
            imgcodec.decode(_raw_header(small_file, w, h), max_pixels=None)


def _raw_header(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its width/height fields overwritten (past what ``pack`` allows), CRC fixed."""
    n = data[5]
    b = bytearray(data)
    struct.pack_into(">II", b, 6 + n + 8 + 1, width, height)
    body = bytes(b[:-4])
    return body + struct.pack(">I", zlib.crc32(body))


def test_cli_size_cap_and_no_size_cap(small_file, tmp_path):
    """12000×12000 (144 MP) over the default cap: refused; with --no-size-cap the cap is lifted and
    the (garbage) payload is what fails — at once, without allocating the image."""
    src = tmp_path / "huge.bin"
    src.write_bytes(_with_size(small_file, 12000, 12000, payload=b"\0" * 8))
    out = tmp_path / "huge.png"
    r = run_cli("decode", str(src), str(out))
    assert r.returncode == 1 and "cap" in r.stderr and "--no-size-cap" in r.stderr
    r = run_cli("decode", "--no-size-cap", str(src), str(out))
    assert r.returncode == 1 and "corrupt payload" in r.stderr, r.stderr
    assert not out.exists()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width×height pixels but holds almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [9000, 12000])  # Pillow's warning zone (> cap) and error zone (> 2 × cap)
def test_decompression_bomb_inputs_are_refused(tmp_path, side):
    from imgcodec.codec import imageio

    assert side * side > imageio.MAX_INPUT_PIXELS
    path = tmp_path / "bomb.png"
    _png_header_only(path, side, side)
    with pytest.raises(InputError, match="decompression bomb"):
        imgcodec.encode(path)
    if side == 12000:
        r = run_cli("encode", str(path), str(tmp_path / "bomb.bin"))
        assert r.returncode == 1 and "decompression bomb" in r.stderr
        assert not (tmp_path / "bomb.bin").exists()

