"""`imgcodec data kodak` against a local HTTP server: verified downloads, skips, refusals."""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgcodec import CodecError, OutputError
from imgcodec.eval.datasets import DownloadError, download_kodak, kodak_checksums

from conftest import run_cli


class QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


def serve(folder):
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; returns (base URL, stop, requests)."""
    handler = type("Handler", (QuietHandler,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}/", stop, handler.requests


@pytest.fixture()
def kodak_server(kodak_dir):
    url, stop, requests = serve(kodak_dir)
    yield url, requests
    stop()


@pytest.fixture()
def corrupt_server(kodak_dir, tmp_path):
    """Serves kodim01 and kodim02 as they are and kodim03 with one byte flipped."""
    src = tmp_path / "served"
    src.mkdir()
    for name in ("kodim01.png", "kodim02.png", "kodim03.png"):
        shutil.copy(kodak_dir / name, src / name)
    data = bytearray((src / "kodim03.png").read_bytes())
    data[1000] ^= 0xFF
    (src / "kodim03.png").write_bytes(bytes(data))
    url, stop, requests = serve(src)
    yield url, requests
    stop()


def test_checksums_are_shipped_with_the_package():
    sums = kodak_checksums()
    assert sorted(sums) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 100_000 for v in sums.values())


def test_shipped_checksums_match_the_shared_copy(kodak_dir):
    for name, want in kodak_checksums().items():
        assert hashlib.sha256((kodak_dir / name).read_bytes()).hexdigest() == want["sha256"], name


def test_download_verify_and_skip(kodak_server, tmp_path):
    url, requests = kodak_server
    dest = tmp_path / "kodak"
    rep = download_kodak(dest, base_url=url, progress=False)
    assert len(rep.downloaded) == 24 and rep.present == []
    assert sorted(p.name for p in dest.iterdir()) == sorted(kodak_checksums())  # no temporary files left
    n = len(requests)
    rep = download_kodak(dest, base_url=url.rstrip("/"), progress=False)  # base URL without the slash
    assert rep.downloaded == [] and len(rep.present) == 24 and len(requests) == n  # nothing fetched again
    # One file damaged on disk: without --force it is refused, with it only that file is fetched again.
    (dest / "kodim05.png").write_bytes(b"not kodak")
    with pytest.raises(OutputError, match="kodim05.png exists and is not the Kodak image"):
        download_kodak(dest, base_url=url, progress=False)
    rep = download_kodak(dest, base_url=url, force=True, progress=False)
    assert rep.downloaded == ["kodim05.png"]


def test_bad_checksum_is_refused_and_nothing_bad_is_left(corrupt_server, tmp_path):
    url, _ = corrupt_server
    dest = tmp_path / "kodak"
    with pytest.raises(DownloadError, match=r"kodim03.png: sha256 .* is not the expected .*file not written") as err:
        download_kodak(dest, base_url=url, progress=False)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in dest.iterdir()) == ["kodim01.png", "kodim02.png"]  # both verified


def test_missing_file_and_unreachable_server(corrupt_server, tmp_path):
    url, _ = corrupt_server
    dest = tmp_path / "kodak"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_kodak(dest, base_url=url + "nothing-here/", progress=False)
    with pytest.raises(CodecError):
        download_kodak(dest, base_url="http://127.0.0.1:9/", timeout=5, progress=False)


def test_data_kodak_command(corrupt_server, kodak_server, tmp_path):
    bad_url, _ = corrupt_server
    dest = tmp_path / "bad"
    r = run_cli("data", "kodak", str(dest), "--url", bad_url)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "kodim03.png: sha256" in r.stderr
    assert not (dest / "kodim03.png").exists()
    good_url, _ = kodak_server
    dest = tmp_path / "good"
    r = run_cli("data", "kodak", str(dest), "--url", good_url)
    assert r.returncode == 0, r.stderr
    assert "24 downloaded, 0 already present, all verified" in r.stdout
