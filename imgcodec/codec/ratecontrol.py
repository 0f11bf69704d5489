"""Rate control: encode to a target file size (or bits per pixel) — the highest quality that fits.

    imgcodec encode photo.png photo.bin --target-size 100KB
    imgcodec encode photo.png photo.bin --target-bpp 0.5

The target is a bound on the whole file (header, payloads, CRC32: what ``imgcodec info`` counts).
The search bisects the model's quality scale, assuming that the file grows with the quality (it
does for the shipped models; where it does not, the result still fits, but a higher quality that
also fits may be missed):

* a continuous-rate model (gain units): every quality in hundredths from 1 to the last level, so
  about nine encodings;
* a model with discrete rate points: its shipped qualities

(``Store.quality_grid``; ``codec.encode_to_target`` runs the search).  The analysis transform
``g_a`` runs once per set of weights and is shared by the qualities those weights code, as the
quality acts only after it.

It stops as soon as a file fits within ``tolerance`` (2 %) below the target; otherwise it returns the
file of the highest quality that fits, the next size below the target on the quality scale.  When
even the lowest quality does not fit, it is an error that names the smallest size possible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

from ..errors import CodecError

TOLERANCE = 0.02
_UNITS = MappingProxyType({"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6,
                           "mib": 1 << 20, "g": 10**9, "gb": 10**9, "gib": 1 << 30})


def parse_size(text) -> int:
    """``"100KB"`` → 100000 bytes (kB, MB, GB decimal; KiB, MiB, GiB binary; a bare number is bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m and _UNITS.get(m.group(2).lower())
    if not unit:
        raise ValueError(f"not a size: {text!r} (e.g. 100KB, 1.5MB, 20000)")
    size = math.floor(float(m.group(1)) * unit)
    if size < 1:
        raise ValueError(f"not a size: {text!r} (at least one byte)")
    return size


@dataclass(frozen=True)
class Fit:
    data: bytes  # the file
    quality: int | float  # the quality it was encoded at
    limit: int  # the target, in bytes
    encodes: int  # files encoded by the search


def search(grid: list, encode: Callable[[object], bytes], limit: int, tolerance: float = TOLERANCE) -> Fit:
    """The file of the highest ``grid`` quality (ascending) whose size is at most ``limit``, by bisection."""
    files: dict[int, bytes] = {}

    def fits(i: int) -> bool:
        if i not in files:
            files[i] = encode(grid[i])
        return len(files[i]) <= limit

    lo, hi = 0, len(grid) - 1
    if fits(hi):
        lo = hi
    elif not fits(lo):
        raise CodecError(
            f"the target of {limit} bytes is too small: even the lowest quality ({grid[0]}) "
            f"makes a file of {len(files[0])} bytes"
        )
    while hi - lo > 1 and len(files[lo]) < (1 - tolerance) * limit:  # lo fits, hi does not
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return Fit(files[lo], grid[lo], limit, len(files))


def target_limit(width: int, height: int, size: int | None = None, bpp: float | None = None) -> int:
    """The byte limit of one target: ``size`` bytes, or ``bpp`` bits per pixel of a width × height image."""
    if (size is None) == (bpp is None):
        raise CodecError("give one target: a size in bytes or bits per pixel")
    if size is None:
        if not (isinstance(bpp, (int, float)) and math.isfinite(bpp) and bpp > 0):
            raise CodecError(f"the target bpp must be a positive number, not {bpp!r}")
        limit = math.floor(bpp * width * height / 8)
    else:
        limit = int(size)
    if limit < 1:
        raise CodecError(f"the target of {size if size is not None else f'{bpp} bpp'} is less than one byte")
    return limit
