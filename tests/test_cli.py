"""The command line as a user meets it: outputs, exit codes, one-line errors, no partial files."""

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from imgcodec.models.store import DEFAULT_MODEL

from conftest import natural_image, run_cli
from conftest import run_main as run


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(natural_image(48, 80, seed=1)).save(path)
    return path


def assert_one_line_error(code, err, pattern):
    assert code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]


def test_encode_decode_info(capsys, tmp_path, photo):
    binf, png = tmp_path / "o.bin", tmp_path / "o.png"
    assert run(capsys, "encode", photo, binf)[0] == 0
    assert binf.read_bytes()[:4] == b"IMGC"
    code, out, _ = run(capsys, "info", binf)
    assert code == 0
    assert DEFAULT_MODEL in out and "80x48" in out and "bpp" in out
    assert run(capsys, "decode", binf, png)[0] == 0
    assert Image.open(png).size == (80, 48)


@pytest.mark.parametrize("ext,fmt", [("webp", "WEBP"), ("tiff", "TIFF"), ("bmp", "BMP")])
def test_decode_format_from_extension(capsys, tmp_path, photo, ext, fmt):
    binf = tmp_path / "o.bin"
    run(capsys, "encode", photo, binf)
    out = tmp_path / f"o.{ext}"
    assert run(capsys, "decode", binf, out)[0] == 0
    assert Image.open(out).format == fmt


def test_batch_encode_and_decode(capsys, tmp_path):
    srcs = []
    for i, ext in enumerate(["png", "jpg", "webp"]):
        p = tmp_path / f"img{i}.{ext}"
        Image.fromarray(natural_image(32, 40, seed=i)).save(p)
        srcs.append(p)
    assert run(capsys, "encode", *srcs, "-o", tmp_path / "bins")[0] == 0
    bins = sorted((tmp_path / "bins").glob("*.bin"))
    assert [b.stem for b in bins] == ["img0", "img1", "img2"]
    assert run(capsys, "decode", *bins, "-o", tmp_path / "dec", "--format", "png")[0] == 0
    assert len(list((tmp_path / "dec").glob("*.png"))) == 3


def test_batch_continues_past_a_bad_file(capsys, tmp_path, photo):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    code, _, err = run(capsys, "encode", photo, bad, "-o", tmp_path / "out")
    assert code == 1
    assert (tmp_path / "out" / "photo.bin").exists()
    assert not (tmp_path / "out" / "bad.bin").exists()
    assert "bad.png" in err and "1 of 2 files failed" in err


@pytest.mark.parametrize(
    "setup,pattern",
    [
        ("missing", "no such file"),
        ("empty", "is empty"),
        ("text", "not an image"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_encode_bad_input(capsys, tmp_path, setup, pattern):
    src = tmp_path / "in.png"
    if setup == "empty":
        src.write_bytes(b"")
    elif setup == "text":
        src.write_text("hello")
    elif setup == "truncated":
        Image.fromarray(natural_image(64, 64)).save(src)
        src.write_bytes(src.read_bytes()[:150])
    out = tmp_path / "out.bin"
    code, _, err = run(capsys, "encode", src, out)
    assert_one_line_error(code, err, pattern)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "in.png"] == []


def test_encode_unknown_model_and_bad_quality(capsys, tmp_path, photo):
    out = tmp_path / "o.bin"
    code, _, err = run(capsys, "encode", photo, out, "--model", "nope")
    assert_one_line_error(code, err, "unknown model 'nope'")
    code, _, err = run(capsys, "encode", photo, out, "-q", "0")
    assert_one_line_error(code, err, "quality 0 is out of range")
    assert not out.exists()


def test_existing_output_is_never_clobbered(capsys, tmp_path, photo):
    out = tmp_path / "o.bin"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, "encode", photo, out)
    assert_one_line_error(code, err, "exists (use --force")
    assert out.read_bytes() == b"precious"
    assert run(capsys, "encode", photo, out, "--force")[0] == 0
    assert out.read_bytes()[:4] == b"IMGC"


def test_unwritable_output_folder(capsys, tmp_path, photo):
    code, _, err = run(capsys, "encode", photo, tmp_path / "no" / "such" / "o.bin")
    assert_one_line_error(code, err, "does not exist")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        # root ignores mode bits: then fall back to sysfs, which refuses new files even to root
        target = next((d for d in (ro, Path("/sys")) if not _can_create_in(d)), None)
        if target is None:
            pytest.skip("no unwritable folder available to this user")
        code, _, err = run(capsys, "encode", photo, target / "o.bin")
        assert_one_line_error(code, err, "not writable" if target == ro else "cannot write")
        assert not (target / "o.bin").exists()
    finally:
        ro.chmod(0o700)


def _can_create_in(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.mark.parametrize("case", ["missing", "empty", "foreign", "truncated", "crc"])
def test_decode_bad_input(capsys, tmp_path, photo, case):
    good = tmp_path / "good.bin"
    run(capsys, "encode", photo, good)
    data = good.read_bytes()
    src = tmp_path / "in.bin"
    if case == "empty":
        src.write_bytes(b"")
    elif case == "foreign":
        src.write_bytes(photo.read_bytes())
    elif case == "truncated":
        src.write_bytes(data[: len(data) // 2])
    elif case == "crc":
        src.write_bytes(data[:-6] + bytes([data[-6] ^ 0x10]) + data[-5:])
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "decode", src, out)
    pattern = {"missing": "no such file", "empty": "not an imgcodec file", "foreign": "not an imgcodec file",
               "truncated": "truncated file", "crc": "CRC32"}[case]  # a cut file is found by its length first
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_decode_unknown_output_extension(capsys, tmp_path, photo):
    binf = tmp_path / "o.bin"
    run(capsys, "encode", photo, binf)
    code, _, err = run(capsys, "decode", binf, tmp_path / "o.xyz")
    assert_one_line_error(code, err, "cannot tell the output format")


def test_usage_error_exit_code(capsys):
    code, _, err = run(capsys, "encode", "only-one-arg")
    assert code == 2 and "INPUT OUTPUT" in err


def test_models_lists_qualities(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "factorized-gdn" in out and "q1" in out and "shipped" in out


def test_real_entry_point_subprocess(tmp_path, photo):
    """One real process: the console entry point, and a one-line error on stderr."""
    r = run_cli("encode", str(photo), str(tmp_path / "o.bin"), "-q", "42")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "out of range" in r.stderr
    assert not (tmp_path / "o.bin").exists()


def test_the_readme_set_up_leaves_no_untracked_files():
    """What the README's set-up command writes into the checkout (sample.bin, sample-decoded.png)
    is ignored by git, so the checkout stays clean."""
    import shutil
    import subprocess

    from conftest import ROOT

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    written = ["sample.bin", "sample-decoded.png"]
    assert all(f" {name} " in readme for name in written)  # the names the set-up command writes
    r = subprocess.run(["git", "check-ignore", *written], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == written, r.stderr


def test_the_command_line_and_the_api_are_one_file_path(capsys, tmp_path, photo):
    """``imgcodec encode``/``decode`` and ``api.encode_file``/``decode_file`` write the same bytes
    and refuse the same outputs: an existing one without ``--force``, the input itself even with it,
    and, for a file naming a model that is not installed, any output at all."""
    from imgcodec.codec import api
    from imgcodec.errors import ModelError, OutputError
    from imgcodec.format import bitstream

    assert run(capsys, "encode", photo, tmp_path / "cli.bin")[0] == 0
    data = api.encode_file(photo, tmp_path / "api.bin")
    assert (tmp_path / "cli.bin").read_bytes() == data == (tmp_path / "api.bin").read_bytes()
    assert run(capsys, "decode", tmp_path / "cli.bin", tmp_path / "cli.png")[0] == 0
    img = api.decode_file(tmp_path / "api.bin", tmp_path / "api.png")
    assert (tmp_path / "cli.png").read_bytes() == (tmp_path / "api.png").read_bytes()
    assert img.size == (80, 48)
    with pytest.raises(OutputError, match="exists"):
        api.encode_file(photo, tmp_path / "api.bin")
    with pytest.raises(OutputError, match="is the input file"):
        api.encode_file(photo, photo, force=True)
    s = bitstream.unpack(data)
    (tmp_path / "other.bin").write_bytes(bitstream.pack(dataclasses.replace(s.header, model="no-such-model"),
                                                        list(s.parts)))
    with pytest.raises(ModelError, match="this file needs model 'no-such-model'"):
        api.decode_file(tmp_path / "other.bin", tmp_path / "other.png")
    code, _, err = run(capsys, "decode", tmp_path / "other.bin", tmp_path / "other.png")
    assert_one_line_error(code, err, "this file needs model 'no-such-model'")
    assert not (tmp_path / "other.png").exists()
