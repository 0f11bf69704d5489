"""The imgcodec file format (versions 1, 2 and 3), documented byte by byte in ``docs/bitstream.md``.

Knows nothing of torch or Pillow: it packs and validates a header, payload parts and a CRC32.
Every field is validated before the decoder allocates anything from it.

    offset  size  field
    0       4     magic  b"IMGC"
    4       1     format version: 1, 2 or 3 (see below)
    5       1     L = length of the model id (1..64)
    6       L     model id: letters, digits, '-', '_', '.' (the name of its config in models/)
    6+L     8     first 8 bytes of the sha256 of the checkpoint file that encoded it
    14+L    Q     quality: version 1, Q = 1, the quality (1..255);
                  version 2, Q = 2, the quality in hundredths, big-endian unsigned (100..25500)
    14+L+Q  4     width in pixels, big-endian unsigned
    18+L+Q  4     height in pixels, big-endian unsigned
    22+L+Q  1     colour mode of the decoded image: 0 RGB, 1 L, 2 RGBA, 3 LA
    (version 3 only) 1 byte: metadata flags, bit 0 ICC profile, bit 1 EXIF, bit 2 XMP (D = 1)
    23+L+Q+D 1    P = number of payload parts: K latent parts, + 1 if the mode has alpha, + 1 for
                  each metadata flag (versions 1: K = 1; 2 and 3: K = 1..MAX_LATENT_PARTS)
    24+L+Q+D 4·P  byte length of each part, big-endian unsigned
    ...     Σ     the parts: the K latent parts (rANS; for the hyperprior [ẑ, ŷ]), then the alpha
                  plane (zlib), if any, then the ICC profile, EXIF and XMP present (each zlib)
    end-4   4     CRC32 (zlib polynomial) of every byte before it, big-endian

A writer uses the oldest version that holds the file: version 1 for a whole quality and one latent
part, version 2 for a fractional quality or more than one latent part, version 3 only when the
image carries metadata — so a file without metadata is byte for byte what older writers made.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import BitstreamError

MAGIC = b"IMGC"
VERSION = 3  # the newest version this module reads and writes (it reads every older one)
VERSIONS = (1, 2, 3)
HASH_PREFIX_BYTES = 8
MAX_MODEL_ID = 64
MAX_PARTS = 16
MAX_LATENT_PARTS = 4
MAX_QUALITY = 255
MAX_SIDE = 1 << 16
# Default cap on width × height for decoding; ``decode(..., max_pixels=None)`` lifts it.
DEFAULT_MAX_PIXELS = 1 << 27  # 134 MP

MODES = ("RGB", "L", "RGBA", "LA")
METADATA = ("icc", "exif", "xmp")  # bit i of the version-3 flags byte; parts in this order
MAX_METADATA_BYTES = 1 << 24  # inflated size of each metadata part
_MODEL_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def valid_model_id(name: str) -> bool:
    """A model id names a config of the registry, never a path: letters, digits, ``-``, ``_``,
    ``.``, not starting with ``.`` (so no ``..``, no ``/``), 1 … 64 characters."""
    return (isinstance(name, str) and 1 <= len(name) <= MAX_MODEL_ID and set(name) <= _MODEL_ID_CHARS
            and not name.startswith("."))



@dataclass(frozen=True)
class Header:
    model: str
    weights: bytes  # sha256 prefix of the checkpoint
    quality: int
    width: int
    height: int
    mode: str
    latent_parts: int = 1  # K: 1 for the factorized model, 2 (ẑ, ŷ) for the hyperprior
    metadata: int = 0  # version-3 flags: bit i set when METADATA[i] is present

    @property
    def has_alpha(self) -> bool:
        return self.mode.endswith("A")

    @property
    def metadata_names(self) -> tuple[str, ...]:
        return tuple(name for i, name in enumerate(METADATA) if self.metadata >> i & 1)

    @property
    def expected_parts(self) -> int:
        return self.latent_parts + (1 if self.has_alpha else 0) + len(self.metadata_names)

    @property
    def centi_quality(self) -> int:
        """The quality in hundredths, as version 2 stores it."""
        return round(self.quality * 100)

    @property
    def version(self) -> int:
        """The oldest format version that holds this header."""
        if self.metadata:
            return 3
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
    if not valid_model_id(h.model):
        raise BitstreamError("corrupt header: bad model id")
    if not isinstance(h.metadata, int) or not 0 <= h.metadata < 1 << len(METADATA):
        raise BitstreamError(f"corrupt header: metadata flags {h.metadata}")
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
    out += struct.pack(">IIB", header.width, header.height, MODES.index(header.mode))
    if version >= 3:
        out += struct.pack(">B", header.metadata)
    out += struct.pack(">B", len(parts))
    for p in parts:
        out += struct.pack(">I", len(p))
    for p in parts:
        out += p
    out += struct.pack(">I", zlib.crc32(out))
    return bytes(out)


def unpack(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Bitstream:
    """Parse and validate a file; raises ``BitstreamError`` for anything but a sound file."""
    data = bytes(data)
    _check_start(data, len(data))
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise BitstreamError(CRC_MISMATCH)
    layout = _parse(data, len(data), max_pixels)
    parts = []
    pos = layout.offset
    for length in layout.lengths:
        parts.append(data[pos : pos + length])
        pos += length
    return Bitstream(layout.header, tuple(parts), len(data))


CRC_MISMATCH = "corrupt file: CRC32 mismatch (the file was damaged or truncated)"
# The longest header a file can have: magic, version, id length, model id, weights hash, quality,
# width, height, mode, metadata flags, part count and the parts' lengths.
MAX_HEADER_BYTES = 6 + MAX_MODEL_ID + HASH_PREFIX_BYTES + 2 + 9 + 1 + 1 + 4 * MAX_PARTS
_BLOCK = 1 << 20  # bytes read at a time for the CRC32 of a file object


@dataclass(frozen=True)
class Layout:
    """A file's header and where its parts lie, without the parts: what ``read_layout`` reads."""

    header: Header
    lengths: tuple[int, ...]  # byte length of each part
    offset: int  # where the first part starts
    size: int  # bytes of the whole file

    def part_offset(self, i: int) -> int:
        return self.offset + sum(self.lengths[:i])

    @property
    def bpp(self) -> float:
        return 8 * self.size / (self.header.width * self.header.height)


def _check_start(data: bytes, size: int) -> None:
    """Magic, version and the shortest length a file of that version can have (``size``: the
    file's whole length, of which ``data`` holds at least the first bytes)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an imgcodec file (bad magic bytes)")
    if size < 6:
        raise BitstreamError("truncated file")
    version = data[4]
    if version not in VERSIONS:
        raise BitstreamError(
            f"unsupported format version {version} (this imgcodec reads versions {VERSIONS[0]} to {VERSIONS[-1]})"
        )
    qsize = 1 if version == 1 else 2
    flags_size = 1 if version >= 3 else 0
    if size < 6 + data[5] + HASH_PREFIX_BYTES + qsize + 10 + flags_size + 4 + 4:
        raise BitstreamError("truncated file")


def _parse(data: bytes, size: int, max_pixels: int | None) -> Layout:
    """The header fields of a file of ``size`` bytes whose first bytes (at least its header, or the
    whole file when shorter) are ``data``; ``_check_start`` has passed."""
    version = data[4]
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
        pos += 1
    else:
        centi = struct.unpack_from(">H", data, pos)[0]
        quality = centi // 100 if centi % 100 == 0 else centi / 100
        pos += 2
    width, height, mode_index = struct.unpack_from(">IIB", data, pos)
    pos += 9
    flags = 0
    if version >= 3:
        flags = data[pos]
        pos += 1
        if not 0 < flags < 1 << len(METADATA):
            raise BitstreamError(f"corrupt header: metadata flags {flags}")
    nparts = data[pos]
    pos += 1
    if mode_index >= len(MODES):
        raise BitstreamError(f"corrupt header: colour mode {mode_index}")
    alpha = MODES[mode_index].endswith("A")
    latent = nparts - alpha - bin(flags).count("1")
    if not (latent == 1 if version == 1 else 1 <= latent <= MAX_LATENT_PARTS):
        raise BitstreamError(f"corrupt header: {nparts} payload parts for mode {MODES[mode_index]}")
    header = Header(model, weights, quality, width, height, MODES[mode_index], latent, flags)
    _validate_header(header, max_pixels)
    if pos + 4 * nparts > size - 4:
        raise BitstreamError("truncated file")
    lengths = struct.unpack_from(f">{nparts}I", data, pos)
    pos += 4 * nparts
    declared = pos + sum(lengths) + 4
    if declared > size:  # (``unpack`` finds a cut file by its CRC32 first; ``read_layout``, here)
        raise BitstreamError(f"truncated file (the header declares {declared} bytes, the file has {size})")
    if declared < size:
        raise BitstreamError("corrupt header: payload lengths do not match the file size")
    return Layout(header, lengths, pos, size)


def read_layout(fp, max_pixels: int | None = DEFAULT_MAX_PIXELS, check_crc: bool = True) -> Layout:
    """The header of the file open in ``fp`` (binary, seekable; the file starts at its position)
    and where its parts lie, in memory bounded whatever the file's size: the header's bytes are read
    and checked against the file's length (a header padded to a gigabyte is refused at once), then,
    with ``check_crc``, the file is read in blocks for its CRC32. ``fp`` is left at the file's start."""
    start = fp.tell()
    fp.seek(0, 2)
    size = fp.tell() - start
    fp.seek(start)
    head = fp.read(MAX_HEADER_BYTES)
    _check_start(head, size)
    layout = _parse(head, size, max_pixels)
    if check_crc:
        fp.seek(start)
        crc, left = 0, size - 4
        while left:
            block = fp.read(min(left, _BLOCK))
            if not block:
                raise BitstreamError("truncated file")
            crc = zlib.crc32(block, crc)
            left -= len(block)
        if fp.read(4) != struct.pack(">I", crc):
            raise BitstreamError(CRC_MISMATCH)
    fp.seek(start)
    return layout


def read_bytes(fp, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of the file open in ``fp``, read only once its header and length agree
    (``read_layout``): a lying header costs no more memory than the header; ``unpack`` checks the rest."""
    layout = read_layout(fp, max_pixels, check_crc=False)
    return fp.read(layout.size)


def pack_metadata(value: bytes) -> bytes:
    return zlib.compress(value, 9)


def unpack_metadata(stream: Bitstream) -> dict[str, bytes]:
    """The metadata parts of a file, inflated (at most ``MAX_METADATA_BYTES`` each)."""
    names = stream.header.metadata_names
    return {name: inflate_metadata(name, part)
            for name, part in zip(names, stream.parts[len(stream.parts) - len(names):])}


# zlib's bound on the deflated size of MAX_METADATA_BYTES (compressBound): no sound metadata part is longer.
MAX_PACKED_METADATA = MAX_METADATA_BYTES + (MAX_METADATA_BYTES >> 12) + (MAX_METADATA_BYTES >> 14) + 13


def inflate_metadata(name: str, part: bytes) -> bytes:
    """One metadata part (``name``: icc, exif or xmp), inflated; at most ``MAX_METADATA_BYTES``."""
    if len(part) > MAX_PACKED_METADATA:
        raise BitstreamError(f"corrupt {name} metadata")
    try:
        d = zlib.decompressobj()
        raw = d.decompress(part, MAX_METADATA_BYTES + 1)
    except zlib.error:
        raise BitstreamError(f"corrupt {name} metadata") from None
    if len(raw) > MAX_METADATA_BYTES or not d.eof or d.unused_data or not raw:
        raise BitstreamError(f"corrupt {name} metadata")
    return raw
