"""Evaluation data sets: the Kodak suite, downloaded and verified against shipped checksums.

``imgcodec data kodak DIR`` fetches ``kodim01.png`` … ``kodim24.png`` from ``KODAK_URL`` (or any base
URL: a mirror, ``file://`` folder), checks every file's sha256 against ``kodak_sha256.json`` (shipped
inside the package) and writes it atomically.  A file already present with the right checksum is
not fetched again; a download with a wrong checksum is an error and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from ..atomic import write_bytes_atomic
from ..errors import InputError, OutputError

KODAK_URL = "http://r0k.us/graphics/kodak/kodak/"
CHECKSUMS = "kodak_sha256.json"
TIMEOUT = 60.0


class DownloadError(InputError):
    """A file could not be fetched, or its content is not the expected one."""


def kodak_checksums() -> dict[str, dict]:
    """``{file name: {"sha256": hex, "bytes": size}}`` of the 24 Kodak images."""
    data = json.loads(resources.files("imgcodec.eval").joinpath(CHECKSUMS).read_text(encoding="utf-8"))
    return {name: {"sha256": digest, "bytes": data["bytes"][name]} for name, digest in data["sha256"].items()}


@dataclass
class FetchReport:
    downloaded: list[str]
    present: list[str]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str, limit: int, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{url}: {exc}") from None
    if len(data) > limit:
        raise DownloadError(f"{url}: larger than the expected {limit} bytes")
    return data


def download_kodak(
    dest: Path,
    base_url: str = KODAK_URL,
    force: bool = False,
    timeout: float = TIMEOUT,
    progress: bool | None = None,
) -> FetchReport:
    """Fetch and verify the Kodak images into ``dest`` (created if needed)."""

    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest} is not a folder")
    expected = kodak_checksums()
    base = base_url if base_url.endswith("/") else base_url + "/"
    report = FetchReport([], [])
    todo = []
    for name, want in expected.items():
        path = dest / name
        if path.is_file() and _sha256(path.read_bytes()) == want["sha256"]:
            report.present.append(name)
        elif path.exists() and not force:
            raise OutputError(f"{path} exists and is not the Kodak image (use --force to replace it)")
        else:
            todo.append(name)
    if todo:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {dest}: {exc.strerror or exc}") from None
    for name in tqdm(todo, desc="kodak", unit="file", disable=None if progress is None else not progress):
        want = expected[name]
        url = urllib.parse.urljoin(base, name)
        data = _fetch(url, want["bytes"], timeout)
        got = _sha256(data)
        if got != want["sha256"]:
            raise DownloadError(f"{url}: sha256 {got[:16]}… is not the expected {want['sha256'][:16]}… (file not written)")
        write_bytes_atomic(dest / name, data, force=True)
        report.downloaded.append(name)
    return report
