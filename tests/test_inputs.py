"""What the encoder takes and how it refuses the rest: API types, float and animated images, sides
past the format's limit, unreadable files, no library noise, and a fast refusal before torch."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import imgcodec
from imgcodec import CodecError, InputError
from imgcodec.codec import imageio

from conftest import natural_image
from conftest import run_main as run


@pytest.fixture(scope="module")
def rgb():
    return natural_image(32, 48, seed=7)


@pytest.fixture(scope="module")
def reference(rgb):
    return imgcodec.encode(Image.fromarray(rgb))


def test_api_takes_paths_images_arrays_bytes_and_file_objects(tmp_path, rgb, reference):
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    png = path.read_bytes()
    for source in (path, str(path), Image.fromarray(rgb), rgb, png, bytearray(png), memoryview(png), io.BytesIO(png)):
        assert imgcodec.encode(source) == reference, type(source)
    with open(path, "rb") as f:
        assert imgcodec.encode(f) == reference


@pytest.mark.parametrize("bad", [42, 3.5, None, ["a.png"], {"x": 1}, io.StringIO("text")])
def test_api_refuses_other_types_with_a_codec_error(bad):
    with pytest.raises(CodecError):
        imgcodec.encode(bad)


def test_decode_takes_a_path_bytes_and_a_file_object(tmp_path, reference):
    f = tmp_path / "x.bin"
    f.write_bytes(reference)
    images = [imgcodec.decode(src) for src in (f, str(f), reference, io.BytesIO(reference))]
    assert all(np.array_equal(np.asarray(images[0]), np.asarray(i)) for i in images)
    with pytest.raises(InputError, match="no such file"):
        imgcodec.decode(tmp_path / "missing.bin")
    with pytest.raises(CodecError):
        imgcodec.decode(12)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1 / 255), (np.float64, 1 / 255), (np.uint16, 257), (np.bool_, None)])
def test_arrays_of_other_dtypes_are_scaled_by_their_range(rgb, dtype, scale):
    if dtype is np.bool_:
        arr = rgb[:, :, 0] > 128
        assert np.array_equal(imageio.read_image(arr).rgb[:, :, 0], arr.astype(np.uint8) * 255)
        return
    arr = (rgb.astype(np.float64) * scale).astype(dtype)
    assert np.abs(imageio.read_image(arr).rgb.astype(int) - rgb).max() <= 1


def test_float_tiff_in_0_1_is_not_black(tmp_path):
    gray = natural_image(24, 40, seed=2)[:, :, 0]
    path = tmp_path / "f.tif"
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(path)
    c = imageio.read_image(path)
    assert c.gray and np.abs(c.rgb[:, :, 0].astype(int) - gray).max() <= 1
    # outside every nominal range: the image's own minimum … maximum
    odd = tmp_path / "g.tif"
    Image.fromarray(gray.astype(np.float32) * 1000 - 5000, "F").save(odd)
    lum = imageio.read_image(odd).rgb[:, :, 0]
    assert lum.min() == 0 and lum.max() == 255


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_inputs_are_refused(tmp_path, fmt):
    frames = [Image.fromarray(natural_image(16, 16, seed=s)) for s in range(3)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(InputError, match=r"animated or has several frames \(3\)"):
        imageio.read_image(path)


def test_a_side_past_the_format_limit_is_said_so(capsys, tmp_path):
    path = tmp_path / "strip.png"
    Image.new("L", (100000, 1), 128).save(path)
    code, _, err = run(capsys, "encode", path, tmp_path / "o.bin")
    assert code == 1
    assert err.strip() == ("imgcodec: error: image of 100000x1 pixels: imgcodec files hold at most 65536 "
                           "pixels a side")


def test_permission_denied_is_not_called_corrupt(monkeypatch, capsys, tmp_path, rgb):
    path = tmp_path / "locked.png"
    Image.fromarray(rgb).save(path)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio, "open", denied, raising=False)  # the module's open (root ignores chmod)
    code, _, err = run(capsys, "encode", path, tmp_path / "o.bin")
    assert code == 1 and err.strip() == f"imgcodec: error: cannot read {path}: permission denied"
    monkeypatch.setattr(imageio.Path, "read_bytes", denied)
    code, _, err = run(capsys, "decode", tmp_path / "x.bin", tmp_path / "o.png")
    assert code == 1 and err.strip() == f"imgcodec: error: cannot read {tmp_path / 'x.bin'}: permission denied"


def _subprocess(code: str, *args, stdin=None):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, input=stdin)


def test_no_library_warnings_on_a_successful_run(tmp_path):
    # A palette PNG with its transparency as bytes: Pillow warns when it is converted.
    p = Image.fromarray(natural_image(16, 24, seed=4)).convert("P")
    p.info["transparency"] = bytes(range(256))
    src = tmp_path / "pal.png"
    p.save(src, transparency=bytes(range(256)))
    run_cli = "import sys; from imgcodec.cli import main; main(sys.argv[1:])"
    proc = _subprocess(run_cli, "encode", src, tmp_path / "o.bin")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = _subprocess(run_cli, "decode", tmp_path / "o.bin", tmp_path / "o.png")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    # the API's first call: no FutureWarning from compressai's torch.jit use
    proc = _subprocess("import sys, warnings; warnings.simplefilter('default'); import imgcodec; "
                       "imgcodec.decode(imgcodec.encode(sys.argv[1]))", src)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_bad_input_is_refused_before_torch_loads(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    probe = ("import sys\nfrom imgcodec.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    print(e.code, 'torch' in sys.modules)\n")
    for args in (["encode", tmp_path / "missing.png", tmp_path / "o.bin"], ["encode", bad, tmp_path / "o.bin"],
                 ["decode", bad, tmp_path / "o.png"], ["encode", bad, tmp_path / "o.bin", "--model", "../pyproject"]):
        proc = _subprocess(probe, *args)
        assert proc.stdout.split() == ["1", "False"], (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_codec_imports_no_compressai_data_sets():
    proc = _subprocess("import sys, imgcodec.codec.api, imgcodec.models.registry\n"
                       "print(sorted(m for m in sys.modules if m.startswith(('torch_geometric', 'scipy.stats', "
                       "'compressai.datasets', 'compressai.zoo', 'torchvision'))))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # compressai itself still works in full once asked for
    proc = _subprocess("import imgcodec.codec.api, compressai, compressai.zoo\n"
                       "from compressai.entropy_models.entropy_models import GaussianConditional\n"
                       "print(compressai.zoo.bmshj2018_factorized.__name__, GaussianConditional._standardized_quantile(0.5))")
    assert proc.returncode == 0, proc.stderr
    name, quantile = proc.stdout.split()
    assert name == "bmshj2018_factorized" and float(quantile) == 0.0  # scipy.stats loaded on its first use
