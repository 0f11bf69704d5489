"""Make a 24-megapixel test photo (6000×4000) for the memory measurements in docs/reliability.md.

    python scripts/make_big_photo.py ../shared/data/train /tmp/big24.png

A 6×5 mosaic of 1000×800 centre crops (portraits turned) of real photos at their native resolution (no upscaling,
so the content has a photo's detail and the codec's rate is a photo's rate).
"""

import sys
from pathlib import Path

from PIL import Image


def main(src: str, dst: str, cols: int = 6, rows: int = 5, cw: int = 1000, ch: int = 800) -> None:
    photos = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    big = Image.new("RGB", (cols * cw, rows * ch))
    n = 0
    for p in photos:
        img = Image.open(p).convert("RGB")
        if img.height > img.width:
            img = img.transpose(Image.Transpose.ROTATE_90)
        if img.width < cw or img.height < ch:
            continue
        left, top = (img.width - cw) // 2, (img.height - ch) // 2
        big.paste(img.crop((left, top, left + cw, top + ch)), ((n % cols) * cw, (n // cols) * ch))
        n += 1
        if n == cols * rows:
            break
    if n < cols * rows:
        raise SystemExit(f"only {n} photos of at least {cw}x{ch} in {src}")
    big.save(dst)
    print(f"{dst}: {big.width}x{big.height}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
