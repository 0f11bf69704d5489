"""The imgcodec file format (versions 1 and 2), documented byte by byte in ``docs/bitstream.md``.

Knows nothing of torch or Pillow: it packs and validates a header, payload parts and a CRC32.
Every field is validated before the decoder allocates anything from it.

    offset  size  field
    0       4     magic  b"IMGC"
    4       1     format version: 1, or 2 (see below)
    5       1     L = length of the model id (1..64)
    6       L     model id, ASCII (the name of its config in models/)
    6+L     8     first 8 bytes of the sha256 of the checkpoint file that encoded it
    14+L    Q     quality: version 1, Q = 1, the quality (1..255);
                  version 2, Q = 2, the quality in hundredths, big-endian unsigned (100..25500)
    14+L+Q  4     width in pixels, big-endian unsigned
    18+L+Q  4     height in pixels, big-endian unsigned
    22+L+Q  1     colour mode of the decoded image: 0 RGB, 1 L, 2 RGBA, 3 LA
    23+L+Q  1     P = number of payload parts: K latent parts, + 1 if the mode has alpha
                  (version 1: K = 1; version 2: K = 1..MAX_LATENT_PARTS)
    24+L+Q  4·P   byte length of each part, big-endian unsigned
    ...     Σ     the parts: the K latent parts (rANS; for the hyperprior [ẑ, ŷ]), then the alpha
                  plane (zlib), if any
    end-4   4     CRC32 (zlib polynomial) of every byte before it, big-endian

A writer uses version 1 whenever the file fits it (a whole quality and one latent part), so the
files of the factorized model are unchanged; version 2 carries a fractional quality or more than
one latent part.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import BitstreamError

MAGIC = b"IMGC"
VERSION = 2  # the newest version this module reads and writes (it reads every older one)
VERSIONS = (1, 2)
HASH_PREFIX_BYTES = 8
MAX_MODEL_ID = 64
MAX_PARTS = 16
MAX_LATENT_PARTS = 4
MAX_QUALITY = 255
MAX_SIDE = 1 << 16
# Default cap on width × height for decoding; ``decode(..., max_pixels=None)`` lifts it.
DEFAULT_MAX_PIXELS = 1 << 27  # 134 MP

MODES = ("RGB", "L", "RGBA", "LA")



@dataclass(frozen=True)
class Header:
    model: str
    weights: bytes  # sha256 prefix of the checkpoint
    quality: int
    width: int
    height: int
    mode: str
    latent_parts: int = 1  # K: 1 for the factorized model, 2 (ẑ, ŷ) for the hyperprior

    @property
    def has_alpha(self) -> bool:
        return self.mode.endswith("A")

    @property
    def expected_parts(self) -> int:
        return self.latent_parts + (1 if self.has_alpha else 0)

    @property
    def centi_quality(self) -> int:
        """The quality in hundredths, as version 2 stores it."""
        return round(self.quality * 100)

    @property
    def version(self) -> int:
        """The oldest format version that holds this header."""
        return 1 if self.latent_parts == 1 and self.centi_quality % 100 == 0 else 2


@dataclass(frozen=True)
class Bitstream:
    header: Header
    parts: tuple[bytes, ...]
    size: int  # bytes of the whole file

    @property
    def bpp(self) -> float:
        return 8 * self.size / (self.header.width * self.header.height)


def _validate_header(h: Header, max_pixels: int | None) -> None:
    if not h.model or len(h.model) > MAX_MODEL_ID or not h.model.isascii() or not h.model.isprintable():
        raise BitstreamError("corrupt header: bad model id")
    if len(h.weights) != HASH_PREFIX_BYTES:
        raise BitstreamError("corrupt header: bad weights hash")
    q = h.quality
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 1 <= q <= MAX_QUALITY \
            or abs(q * 100 - round(q * 100)) > 1e-6:
        raise BitstreamError(f"corrupt header: quality {q}")
    if not 1 <= h.latent_parts <= MAX_LATENT_PARTS:
        raise BitstreamError(f"corrupt header: {h.latent_parts} latent parts")
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise BitstreamError(f"corrupt header: image size {h.width}x{h.height} (at most {MAX_SIDE} a side)")
    if max_pixels is not None and h.width * h.height > max_pixels:
        raise BitstreamError(
            f"image of {h.width}x{h.height} exceeds the decoder's cap of {max_pixels} pixels "
            "(pass max_pixels=None / --no-size-cap to allow it)"
        )
    if h.mode not in MODES:
        raise BitstreamError(f"corrupt header: colour mode {h.mode!r}")


def pack(header: Header, parts: list[bytes]) -> bytes:
    _validate_header(header, None)
    if len(parts) != header.expected_parts:
        raise BitstreamError(f"mode {header.mode} needs {header.expected_parts} payload parts, got {len(parts)}")
    model = header.model.encode("ascii")
    version = header.version
    out = bytearray(MAGIC)
    out += bytes([version, len(model)]) + model + header.weights
    if version == 1:
        out += struct.pack(">B", header.centi_quality // 100)
    else:
        out += struct.pack(">H", header.centi_quality)
    out += struct.pack(">IIBB", header.width, header.height, MODES.index(header.mode), len(parts))
    for p in parts:
        out += struct.pack(">I", len(p))
    for p in parts:
        out += p
    out += struct.pack(">I", zlib.crc32(out))
    return bytes(out)


def unpack(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Bitstream:
    """Parse and validate a file; raises ``BitstreamError`` for anything but a sound file."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an imgcodec file (bad magic bytes)")
    if len(data) < 6:
        raise BitstreamError("truncated file")
    version = data[4]
    if version not in VERSIONS:
        raise BitstreamError(
            f"unsupported format version {version} (this imgcodec reads versions {VERSIONS[0]} to {VERSIONS[-1]})"
        )
    qsize = 1 if version == 1 else 2
    if len(data) < 6 + data[5] + HASH_PREFIX_BYTES + qsize + 10 + 4 + 4:
        raise BitstreamError("truncated file")
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise BitstreamError("corrupt file: CRC32 mismatch (the file was damaged or truncated)")
    n = data[5]
    pos = 6
    try:
        model = data[pos : pos + n].decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupt header: bad model id") from None
    pos += n
    weights = data[pos : pos + HASH_PREFIX_BYTES]
    pos += HASH_PREFIX_BYTES
    if version == 1:
        quality = data[pos]
    else:
        centi = struct.unpack_from(">H", data, pos)[0]
        quality = centi // 100 if centi % 100 == 0 else centi / 100
    pos += qsize
    width, height, mode_index, nparts = struct.unpack_from(">IIBB", data, pos)
    pos += 10
    if mode_index >= len(MODES):
        raise BitstreamError(f"corrupt header: colour mode {mode_index}")
    alpha = MODES[mode_index].endswith("A")
    latent = nparts - alpha
    if not (latent == 1 if version == 1 else 1 <= latent <= MAX_LATENT_PARTS):
        raise BitstreamError(f"corrupt header: {nparts} payload parts for mode {MODES[mode_index]}")
    header = Header(model, weights, quality, width, height, MODES[mode_index], latent)
    _validate_header(header, max_pixels)
    if pos + 4 * nparts > len(body):
        raise BitstreamError("truncated file")
    lengths = struct.unpack_from(f">{nparts}I", data, pos)
    pos += 4 * nparts
    if pos + sum(lengths) != len(body):
        raise BitstreamError("corrupt header: payload lengths do not match the file size")
    parts = []
    for length in lengths:
        parts.append(data[pos : pos + length])
        pos += length
    return Bitstream(header, tuple(parts), len(data))
