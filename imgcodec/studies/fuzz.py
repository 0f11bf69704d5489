"""Decoder fuzzing: mutate valid files, feed them to ``imgcodec.decode``, check the contract.

    python -m imgcodec.studies.fuzz --inputs 100000 --seed 1 --report fuzz-report.json

The contract: for any bytes, ``imgcodec.decode`` returns a ``PIL.Image`` of the size and
mode its header names, or raises ``CodecError`` with a message.  Nothing else may escape; no input
may take more than ``cpu_limit`` seconds of CPU; none may allocate beyond ``mem_limit`` bytes of
address space (``RLIMIT_AS`` over the worker's settled size, so a huge allocation fails inside the
decoder and shows up as a ``MemoryError`` finding); and the process must not die (a segfault, an
abort) or hang (a watchdog kills a worker silent for ``wall_limit`` seconds).

The parent process (no torch) draws every input from a seeded ``random.Random``, so a run is
reproducible from its seed; a worker subprocess (``--worker``) builds the seed files, decodes and
reports.  A dead or hung worker is a finding: its input is saved and a fresh worker goes on.

The seed files are small valid files made at run time with the shipped model (RGB, RGBA, L, LA),
plus *foreign* files: latents coded with the entropy tables of another, randomly initialised model
of the same config, wrapped in the shipped model's header with a correct CRC32 — a file that passes
every header check and whose payload is garbage to this decoder.

The mutations: bit flips, byte overwrites with interesting values, truncation, extension,
insertion and deletion of chunks, header fields set to extremes, random bytes (with and without
the magic), splices of two seeds, payload parts replaced by garbage, payload bit flips, the alpha
plane replaced by a zlib bomb; most mutations then re-seal the file with a correct CRC32 (and
consistent part lengths) half the time, so that they reach the entropy decoder and the model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..format import bitstream
from ..format.bitstream import DEFAULT_MAX_PIXELS
from ..models.store import default_store

MAGIC = b"IMGC"
DEFAULT_CPU_LIMIT = 20.0  # seconds of CPU per input
DEFAULT_WALL_LIMIT = 300.0  # a worker silent this long is hung (generous: the machine may be busy)
DEFAULT_MEM_LIMIT = 2 << 30  # bytes of address space an input may add to the settled worker


# ---------------------------------------------------------------------------------------------
# File layout helpers (the fuzzer's own, independent of bitstream.py so that they can lie)


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC32, as a file ends."""
    return body + struct.pack(">I", zlib.crc32(body))


def reseal(data: bytes) -> bytes:
    """Replace the last four bytes by the CRC32 of what precedes them."""
    return seal(data[:-4]) if len(data) >= 4 else data


@dataclass
class Layout:
    """Offsets of a valid file's header fields (see docs/bitstream.md), its payload parts
    (offset, length) and how many of them are latent parts (the alpha plane and the metadata
    parts follow those)."""

    model_len: int
    quality: int
    width: int
    height: int
    mode: int
    nparts: int
    lengths: int
    payload: int
    parts: list[tuple[int, int]]
    latent: int

    @classmethod
    def of(cls, data: bytes) -> "Layout":
        n = data[5]
        q = 6 + n + 8
        w = q + (1 if data[4] == 1 else 2)  # version 2 holds the quality in hundredths, 2 bytes
        flags = data[w + 9] if data[4] >= 3 else 0  # version 3: the metadata flags byte
        at = w + 9 + (1 if data[4] >= 3 else 0)
        nparts = data[at]
        lengths = struct.unpack_from(f">{nparts}I", data, at + 1)
        pos = at + 1 + 4 * nparts
        parts = []
        for length in lengths:
            parts.append((pos, length))
            pos += length
        latent = nparts - (data[w + 8] in (2, 3)) - bin(flags).count("1")  # modes 2, 3: RGBA, LA
        return cls(5, q, w, w + 4, w + 8, at, at + 1, at + 1 + 4 * nparts, parts, latent)


def repack(data: bytes, parts: list[bytes]) -> bytes:
    """The file ``data`` with its payload parts replaced, lengths and CRC made consistent."""
    lay = Layout.of(data)
    head = bytearray(data[: lay.lengths])
    head[lay.nparts] = len(parts) & 0xFF
    for p in parts:
        head += struct.pack(">I", len(p) & 0xFFFFFFFF)
    return seal(bytes(head) + b"".join(parts))


# ---------------------------------------------------------------------------------------------
# Mutations


INTERESTING8 = [0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]
INTERESTING32 = [0, 1, 2, 15, 16, 17, 255, 256, 4095, 4096, 65535, 65536, 65537, (1 << 31) - 1, 1 << 31,
                 (1 << 32) - 1, 11585, 11586, 16383, 16384]


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def m_bitflip(rng, seeds, data):
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 1 << (i % 8)
    return bytes(b), True


def m_bytes(rng, seeds, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.choice(INTERESTING8 + [rng.randrange(256)])
    return bytes(b), True


def m_truncate(rng, seeds, data):
    return data[: rng.randrange(len(data))], True


def m_extend(rng, seeds, data):
    tail = rng.choice([_rand_bytes(rng, rng.randint(1, 64)), b"\0" * rng.randint(1, 4096), data])
    return data + tail, True


def m_insert_delete(rng, seeds, data):
    i = rng.randrange(len(data))
    if rng.random() < 0.5:
        return data[:i] + _rand_bytes(rng, rng.randint(1, 16)) + data[i:], True
    return data[:i] + data[i + rng.randint(1, 16):], True


def m_header(rng, seeds, data):
    lay = Layout.of(data)
    b = bytearray(data)
    field_ = rng.choice(["version", "model_len", "quality", "width", "height", "mode", "nparts", "length", "wh"])
    if field_ == "version":
        b[4] = rng.choice(INTERESTING8)
    elif field_ in ("model_len", "quality", "mode", "nparts"):
        b[getattr(lay, field_)] = rng.choice(INTERESTING8 + [rng.randrange(256)])
    elif field_ in ("width", "height"):
        struct.pack_into(">I", b, getattr(lay, field_), rng.choice(INTERESTING32 + [rng.getrandbits(32)]))
    elif field_ == "wh":  # both sides large, near and past the pixel cap
        side = rng.choice([4096, 6000, 8192, 11585, 11586, 16384, 65535, 65536])
        struct.pack_into(">II", b, lay.width, side, rng.choice([1, 16, side // 2, side]))
    else:
        i = rng.randrange(len(lay.parts))
        struct.pack_into(">I", b, lay.lengths + 4 * i, rng.choice(INTERESTING32 + [rng.getrandbits(32)]))
    return bytes(b), rng.random() < 0.8


def m_random(rng, seeds, data):
    n = rng.choice([0, 1, 3, 4, 5, 8, 16, 40, rng.randint(0, 512)])
    prefix = rng.choice([b"", MAGIC, MAGIC + b"\x01", data[: rng.randrange(len(data))]])
    return prefix + _rand_bytes(rng, n), rng.random() < 0.5


def m_splice(rng, seeds, data):
    other = rng.choice(seeds)
    return data[: rng.randrange(len(data))] + other[rng.randrange(len(other)):], True


def m_payload(rng, seeds, data):
    """One latent part replaced by garbage; half the time another part (the alpha plane, a
    metadata part or another latent part) too, perhaps by a zlib bomb."""
    lay = Layout.of(data)
    parts = [data[p : p + n] for p, n in lay.parts]
    i = rng.randrange(lay.latent)
    n0 = len(parts[i])
    parts[i] = rng.choice([
        b"",
        _rand_bytes(rng, rng.choice([1, 3, 4, 7, 8, 12])),
        _rand_bytes(rng, n0),
        _rand_bytes(rng, rng.randint(1, 4 * n0 + 64)),
        b"\xff" * rng.choice([4, 8, n0, 1024]),
        b"\x00" * rng.choice([4, 8, n0, 1024]),
        parts[i][: rng.randrange(n0)] if n0 else b"",
        parts[i] + _rand_bytes(rng, rng.choice([1, 4, 8])),
        rng.choice(seeds)[-4 - n0 : -4] if n0 else b"",
    ])
    others = [j for j in range(len(parts)) if j != i]
    if others and rng.random() < 0.5:
        j = rng.choice(others)
        parts[j] = rng.choice([b"", _rand_bytes(rng, 32), zlib.compress(b"\0" * (1 << 24), 9),
                               zlib.compress(b"\x80" * 7, 9), parts[j][:-1]])
    return repack(data, parts), False


def m_payload_bits(rng, seeds, data):
    lay = Layout.of(data)
    pos, n = rng.choice(lay.parts)
    if n == 0:
        return data, True
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        i = pos * 8 + rng.randrange(n * 8)
        b[i // 8] ^= 1 << (i % 8)
    return bytes(b), True


MUTATIONS = {
    "bitflip": m_bitflip,
    "bytes": m_bytes,
    "truncate": m_truncate,
    "extend": m_extend,
    "insert_delete": m_insert_delete,
    "header": m_header,
    "random": m_random,
    "splice": m_splice,
    "payload": m_payload,
    "payload_bits": m_payload_bits,
    "foreign": None,  # a foreign seed, perhaps mutated further
}


def generate(seed: int, index: int, seeds: list[bytes], foreign: list[bytes]) -> tuple[str, bytes]:
    """Input number ``index`` of the campaign ``seed``: (mutation name, bytes)."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choice(list(MUTATIONS))
    if kind == "foreign":
        data = rng.choice(foreign)
        if rng.random() < 0.5:
            data, fix = rng.choice([m_payload_bits, m_bitflip, m_header])(rng, seeds, data)
            data = reseal(data) if fix else data
        return kind, data
    data, may_reseal = MUTATIONS[kind](rng, seeds, rng.choice(seeds))
    if may_reseal and rng.random() < 0.5:
        data = reseal(data)
    return kind, data


# ---------------------------------------------------------------------------------------------
# Worker: decodes inputs, one per request


def _seed_images():
    # deferred: the parent process stays free of numpy, Pillow and torch (only workers import them)
    import numpy as np

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([(xx * 5) % 256, (yy * 7) % 256, (xx + yy) * 3 % 256], -1).astype(np.uint8)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    # deferred: the parent process stays free of numpy, Pillow and torch (only workers import them)
    from PIL import Image

    alpha = Image.fromarray((xx * 5 % 256).astype(np.uint8), "L")
    rgba = Image.fromarray(rgb, "RGB")
    rgba.putalpha(alpha)
    la = Image.fromarray(rgb[..., 0], "L")
    la.putalpha(alpha)
    return [
        Image.fromarray(rgb[:16, :16], "RGB"),
        Image.fromarray(rgb, "RGB"),
        rgba.crop((0, 0, 20, 13)),
        Image.fromarray(rgb[:17, :33, 1], "L"),
        la.crop((0, 0, 16, 16)),
        Image.fromarray(rgb[:1, :1], "RGB"),
    ]


def make_seeds() -> tuple[list[bytes], list[bytes]]:
    """(valid seed files, foreign files) — see the module docstring."""
    # deferred: the parent process stays free of numpy, Pillow and torch (only workers import them)
    import torch

    # deferred: the parent process stays free of numpy, Pillow and torch (only workers import them)
    from ..codec import api as codec
    from ..codec.imageio import canonicalize

    # deferred: the parent process stays free of numpy, Pillow and torch (only workers import them)
    from ..models.registry import build_model

    home = default_store()
    loaded = home.load_shipped()
    images = _seed_images()
    seeds = [codec.encode_canonical(canonicalize(img), loaded) for img in images]
    # One file of every other shipped checkpoint: other architectures, format versions.
    for entry in home.read_manifest():
        if entry["sha256"] != loaded.sha256:
            # the entry numbers its position on the ladder (0: a continuous model's one checkpoint)
            position = entry["quality"]
            other_loaded = home.load_shipped(
                entry["model"], position and home.load_config(entry["model"]).from_stored(position))
            seeds.append(codec.encode_canonical(canonicalize(images[2 if len(seeds) % 2 else 0]), other_loaded))
    torch.manual_seed(1234)
    other = build_model(loaded.config).eval()
    other.update(force=True)
    foreign = []
    for img in _seed_images()[:3]:
        rgb = canonicalize(img)
        payload = codec.compress_latents(other, rgb.rgb, quality=loaded.quality)  # every latent part
        header = bitstream.unpack(codec.encode_canonical(rgb, loaded)).header
        parts = payload + ([zlib.compress(rgb.alpha.tobytes())] if rgb.alpha is not None else [])
        foreign.append(bitstream.pack(header, parts))
    return seeds, foreign


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _read_exact(stream, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def check(data: bytes, max_pixels) -> dict:
    """Decode one input in this process and classify the outcome (never raises)."""
    # deferred: only a worker process imports the codec (torch)
    import imgcodec

    t0, c0 = time.perf_counter(), time.process_time()
    result: dict = {}
    try:
        img = imgcodec.decode(data, max_pixels=max_pixels)
    except imgcodec.CodecError as exc:
        msg = str(exc)
        result = {"outcome": type(exc).__name__, "reason": re.sub(r"\d+|'[^']*'", "#", msg.split(" (")[0])[:70]}
        if not msg.strip():
            result = {"outcome": "finding", "why": f"{type(exc).__name__} without a message"}
    except BaseException as exc:  # noqa: BLE001 - everything else is what we are looking for
        if isinstance(exc, KeyboardInterrupt):
            raise
        result = {"outcome": "finding", "why": f"{type(exc).__name__}: {str(exc)[:300]}"}
    else:
        h = bitstream.unpack(data, max_pixels=None).header
        mode = {"RGB": "RGB", "L": "L", "RGBA": "RGBA", "LA": "LA"}[h.mode]
        if img.size != (h.width, h.height) or img.mode != mode:
            result = {"outcome": "finding", "why": f"decoded {img.size} {img.mode}, header says "
                                                    f"{(h.width, h.height)} {h.mode}"}
        else:
            result = {"outcome": "decoded"}
    result["cpu"] = time.process_time() - c0
    result["wall"] = time.perf_counter() - t0
    return result


def worker_main(mem_limit: int, max_pixels) -> None:
    warnings.simplefilter("ignore")
    # deferred: only a worker process imports torch
    import torch

    torch.set_num_threads(1)
    seeds, foreign = make_seeds()
    for s in seeds:  # warm up every code path once before the address-space limit is set
        check(s, max_pixels)
    if mem_limit > 0:
        limit = _vm_size() + mem_limit
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    out.write(json.dumps({"seeds": [base64.b64encode(s).decode() for s in seeds],
                          "foreign": [base64.b64encode(s).decode() for s in foreign]}) + "\n")
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        head = _read_exact(stdin, 4)
        if head is None:
            return
        data = _read_exact(stdin, struct.unpack(">I", head)[0])
        if data is None:
            return
        r = check(data, max_pixels)
        r["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.write(json.dumps(r) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# Parent: draws inputs, runs a worker, watches it


class Worker:
    def __init__(self, mem_limit: int, max_pixels, start_timeout: float, home: Path | None = None):
        cmd = [sys.executable, "-m", "imgcodec.studies.fuzz", "--worker", "--mem-limit", str(mem_limit)]
        if max_pixels is None:
            cmd.append("--no-size-cap")
        elif max_pixels != "default":
            cmd += ["--max-pixels", str(max_pixels)]
        # the worker's store: $IMGCODEC_HOME = home where given, else this process's environment
        env = None if home is None else dict(os.environ, IMGCODEC_HOME=str(home))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            hello = self._line(start_timeout)
        except BaseException:
            self.kill()
            raise
        if hello is None:
            self.kill()
            raise RuntimeError("the fuzz worker did not start")
        msg = json.loads(hello)
        self.seeds = [base64.b64decode(s) for s in msg["seeds"]]
        self.foreign = [base64.b64decode(s) for s in msg["foreign"]]

    def _line(self, timeout: float) -> bytes | None:
        out = self.proc.stdout
        if not select.select([out], [], [], timeout)[0]:
            return None
        line = out.readline()
        return line or None

    def run(self, data: bytes, timeout: float) -> dict:
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._line(timeout)
        if line is None:
            if self.proc.poll() is None:
                self.kill()
                return {"outcome": "finding", "why": f"hang: no answer in {timeout:.0f} s"}
            return {"outcome": "finding", "why": f"worker died (exit status {self.proc.returncode})"}
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@dataclass
class Report:
    seed: int
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    by_mutation: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    max_cpu: float = 0.0
    max_wall: float = 0.0
    max_rss: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict:
        return {
            "seed": self.seed, "inputs": self.inputs, "outcomes": dict(self.outcomes),
            "by_mutation": {k: dict(v) for k, v in sorted(self.by_mutation.items())},
            "reasons": dict(self.reasons.most_common()),
            "findings": self.findings, "max_cpu_s_per_input": round(self.max_cpu, 4),
            "max_wall_s_per_input": round(self.max_wall, 4), "worker_peak_rss_mib": self.max_rss >> 20,
            "seconds": round(self.seconds, 1), "interrupted": self.interrupted,
        }


def campaign(n: int, seed: int = 0, cpu_limit: float = DEFAULT_CPU_LIMIT, wall_limit: float = DEFAULT_WALL_LIMIT,
             mem_limit: int = DEFAULT_MEM_LIMIT, max_pixels="default", save_dir: Path | None = None,
             inputs=None, progress=None, start: int = 0, home: Path | None = None) -> Report:
    """Run inputs ``start … start+n-1`` of campaign ``seed`` (or the given ``inputs``) through a worker.
    ``home``: the store root (``models/``, ``checkpoints/``) the worker takes its models from, passed
    as its ``$IMGCODEC_HOME`` (None: the worker inherits this process's environment)."""
    t0 = time.perf_counter()
    report = Report(seed)
    worker = Worker(mem_limit, max_pixels, start_timeout=max(wall_limit, 120), home=home)
    seeds, foreign = worker.seeds, worker.foreign
    items = ((("given", d) for d in inputs) if inputs is not None
             else (generate(seed, i, seeds, foreign) for i in range(start, start + n)))
    try:
        for index, (kind, data) in enumerate(items, start):
            if report.interrupted:
                break
            r = worker.run(data, wall_limit)
            if r["outcome"] != "finding" and r.get("cpu", 0) > cpu_limit:
                r = {"outcome": "finding", "why": f"slow: {r['cpu']:.1f} s of CPU", **r}
            report.inputs += 1
            report.outcomes[r["outcome"]] += 1
            if "reason" in r:
                report.reasons[f'{r["outcome"]}: {r["reason"]}'] += 1
            report.by_mutation.setdefault(kind, Counter())[r["outcome"]] += 1
            report.max_cpu = max(report.max_cpu, r.get("cpu", 0.0))
            report.max_wall = max(report.max_wall, r.get("wall", 0.0))
            report.max_rss = max(report.max_rss, r.get("maxrss", 0))
            if r["outcome"] == "finding":
                digest = hashlib.sha256(data).hexdigest()[:16]
                report.findings.append({"index": index, "mutation": kind, "why": r["why"], "sha256": digest})
                if save_dir is not None:
                    save_dir.mkdir(parents=True, exist_ok=True)
                    (save_dir / f"finding-{digest}.bin").write_bytes(data)
                if worker.proc.poll() is not None or r["why"].startswith("hang"):
                    worker.kill()
                    worker = Worker(mem_limit, max_pixels, start_timeout=max(wall_limit, 120), home=home)
            if progress and report.inputs % progress == 0:
                print(json.dumps({"done": report.inputs, "outcomes": dict(report.outcomes),
                                  "seconds": round(time.perf_counter() - t0)}), file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # also SIGTERM (see main): the report covers the inputs run so far
        report.interrupted = True
    finally:
        worker.kill()
    report.seconds = time.perf_counter() - t0
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imgcodec.studies.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1000, help="how many inputs to run")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed (inputs are reproducible from it)")
    ap.add_argument("--start", type=int, default=0, help="index of the first input")
    ap.add_argument("--cpu-limit", type=float, default=DEFAULT_CPU_LIMIT, help="CPU seconds per input")
    ap.add_argument("--wall-limit", type=float, default=DEFAULT_WALL_LIMIT, help="watchdog, seconds per input")
    ap.add_argument("--mem-limit", type=int, default=DEFAULT_MEM_LIMIT, help="bytes of address space per input")
    ap.add_argument("--max-pixels", type=int, help="decoder pixel cap (default: the decoder's own)")
    ap.add_argument("--no-size-cap", action="store_true", help="decode without a pixel cap")
    ap.add_argument("--save", type=Path, help="folder for inputs that break the contract")
    ap.add_argument("--report", type=Path, help="write the JSON report here")
    ap.add_argument("--progress", type=int, default=0, help="print a progress line every N inputs")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.no_size_cap:
        max_pixels = None
    elif args.max_pixels is not None:
        max_pixels = args.max_pixels
    else:
        max_pixels = "default"
    if args.worker:
        if max_pixels == "default":
            max_pixels = DEFAULT_MAX_PIXELS
        worker_main(args.mem_limit, max_pixels)
        return 0
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `timeout` bounds a campaign and still gets its report
    report = campaign(args.inputs, args.seed, args.cpu_limit, args.wall_limit, args.mem_limit, max_pixels,
                      args.save, progress=args.progress, start=args.start)
    text = json.dumps(report.as_dict(), indent=2)
    if args.report:
        args.report.write_text(text + "\n")
    print(text)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
