"""Where outputs go: never over an input, through symlinks, never over a read-only file; ``-`` as
standard input and output; a full disk and a file-size limit as one line; batches that go on."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
from PIL import Image

import imgcodec
from imgcodec.format import bitstream

from conftest import natural_image
from conftest import run_main as run


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(natural_image(40, 56, seed=3)).save(path)
    return path


def one_line(code, err, pattern):
    assert code not in (0, None, 70)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("force", [False, True])
def test_output_never_replaces_the_input(capsys, tmp_path, photo, force):
    before = photo.read_bytes()
    code, _, err = run(capsys, "encode", photo, photo, *(["-f"] if force else []))
    one_line(code, err, "is the input file")
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    hard = tmp_path / "hard.png"
    os.link(photo, hard)
    for other in (link, hard):
        code, _, err = run(capsys, "encode", photo, other, "-f")
        one_line(code, err, "is the input file")
    assert photo.read_bytes() == before
    # decode likewise: a .bin never overwritten by its own decoding
    binf = tmp_path / "x.png.bin"
    assert run(capsys, "encode", photo, binf)[0] == 0
    data = binf.read_bytes()
    (tmp_path / "b.png").symlink_to(binf)
    code, _, err = run(capsys, "decode", binf, tmp_path / "b.png", "-f")
    one_line(code, err, "is the input file")
    assert binf.read_bytes() == data


def test_force_over_a_symlink_replaces_its_target(capsys, tmp_path, photo):
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "out.bin"
    link.symlink_to(target)
    assert run(capsys, "encode", photo, link, "-f")[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"IMGC"
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)  # the replaced file's mode is kept
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_force_refuses_a_read_only_output(capsys, tmp_path, photo):
    out = tmp_path / "keep.bin"
    out.write_bytes(b"precious")
    os.chmod(out, 0o444)
    code, _, err = run(capsys, "encode", photo, out, "-f")
    one_line(code, err, "read-only")
    assert out.read_bytes() == b"precious"


def _cli(*args, stdin=None, **kw):
    return subprocess.run([sys.executable, "-m", "imgcodec.cli", *map(str, args)], input=stdin,
                          capture_output=True, cwd=kw.pop("cwd", None), timeout=300, **kw)


def test_dash_is_stdin_and_stdout(tmp_path, photo):
    enc = _cli("encode", "-", "-", stdin=photo.read_bytes(), cwd=tmp_path)
    assert enc.returncode == 0, enc.stderr
    assert enc.stderr == b""
    assert not (tmp_path / "-").exists()
    ref = tmp_path / "ref.bin"
    assert _cli("encode", photo, ref).returncode == 0
    assert enc.stdout == ref.read_bytes()  # the same file as from a path
    dec = _cli("decode", "-", "-", "--format", "png", stdin=enc.stdout, cwd=tmp_path)
    assert dec.returncode == 0 and dec.stderr == b"", dec.stderr
    (tmp_path / "d.png").write_bytes(dec.stdout)
    assert Image.open(tmp_path / "d.png").size == (56, 40)
    assert not (tmp_path / "-").exists()
    # an empty standard input is one line, no torch needed to say so
    empty = _cli("encode", "-", "out.bin", stdin=b"", cwd=tmp_path)
    assert empty.returncode == 1 and empty.stderr.decode().strip() == "imgcodec: error: standard input is empty"


def _limited(max_bytes):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return preexec


def test_a_file_size_limit_is_one_line_and_the_batch_goes_on(tmp_path, photo):
    """RLIMIT_FSIZE stands in for a full disk: writes fail with EFBIG (SIGXFSZ is ignored)."""
    big = tmp_path / "big.png"
    Image.fromarray(natural_image(256, 320, seed=5)).save(big)
    small = tmp_path / "tiny.png"
    Image.fromarray(natural_image(16, 16, seed=6)).save(small)
    out = tmp_path / "out"
    # a limit between the big file and the others, whatever the default model's rate
    sizes = {p: len(imgcodec.encode(p)) for p in (big, small, photo)}
    others = max(sizes[small], sizes[photo])
    assert sizes[big] > others + 64, sizes
    proc = _cli("encode", big, small, photo, "-o", out, preexec_fn=_limited((sizes[big] + others) // 2))
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert lines[-1] == "imgcodec: error: 1 of 3 files failed", err  # the first failed, the others went on
    assert len(lines) == 2 and lines[0] == f"imgcodec: {big}: cannot write {out / 'big.bin'}: file too large " \
        "(a file-size limit or the file system's)", err
    assert sorted(p.name for p in out.iterdir()) == ["photo.bin", "tiny.bin"]  # no partial, no temporary file
    for name in ("photo.bin", "tiny.bin"):
        bitstream.unpack((out / name).read_bytes())


def test_full_disk_message(monkeypatch, capsys, tmp_path, photo):
    """ENOSPC while writing: one line naming the output and the cause, no temporary file left."""
    import errno

    from imgcodec import atomic

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    code, _, err = run(capsys, "encode", photo, tmp_path / "o.bin")
    monkeypatch.setattr(atomic.os, "fsync", real)
    one_line(code, err, f"cannot write {tmp_path / 'o.bin'}: no space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_batch_reports_every_failure_after_the_bar(capsys, tmp_path, photo):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    missing = tmp_path / "missing.png"
    code, _, err = run(capsys, "encode", bad, photo, missing, "-o", tmp_path / "o")
    lines = err.strip().splitlines()
    assert code == 1
    assert lines == [f"imgcodec: {bad}: {bad} is not an image Pillow can read",
                     f"imgcodec: {missing}: {missing}: no such file",
                     "imgcodec: error: 2 of 3 files failed"]
    assert (tmp_path / "o" / "photo.bin").exists()


def test_dash_only_for_a_single_file(capsys, tmp_path, photo):
    code, _, err = run(capsys, "encode", "-", photo, "-o", tmp_path / "o")
    assert code == 2 and "single file" in err


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-hard-links"])
def test_no_clobber_holds_against_a_writer_at_the_same_moment(monkeypatch, capsys, tmp_path, photo, links):
    """Without -f, an output that another run creates between our check and our publication is
    never replaced: the name is taken exclusively (a hard link of the complete temporary file, or,
    on a file system without hard links, an O_EXCL create) instead of checked and then renamed over.
    The other writer is simulated at the last moment: inside the call that publishes."""
    import errno

    from imgcodec import atomic

    out = tmp_path / "o.bin"
    theirs = b"the other run's file\n"
    real_link, real_replace = os.link, os.replace
    race = [True]

    def publishing(real):
        def publish(src, dst):
            if race[0] and os.fspath(dst) == os.fspath(out) and not out.exists():
                out.write_bytes(theirs)  # the other run wins the race by a hair
            if real is real_link and not links:
                raise OSError(errno.EPERM, "Operation not permitted")
            return real(src, dst)
        return publish

    monkeypatch.setattr(atomic.os, "link", publishing(real_link))
    monkeypatch.setattr(atomic.os, "replace", publishing(real_replace))
    code, _, err = run(capsys, "encode", photo, out)
    one_line(code, err, f"output {out} exists (use --force to overwrite)")
    assert out.read_bytes() == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.bin", "photo.png"]  # no temporary file left
    out.unlink()
    race[0] = False
    assert run(capsys, "encode", photo, out)[0] == 0  # nobody racing: published, by either way
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_bytes() == imgcodec.encode(photo) and out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.bin", "photo.png"]
