"""The training data: random crops of images held in memory, in a stream that every rank, worker
and resume sees the same way.

Crop i depends only on (seed, i); step k of rank r takes the crops (k·world + r)·batch onwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.imageio import find_images, load_rgb_array
from ..codec.tensors import pad_image
from ..errors import CodecError, InputError
from .options import TrainOptions


class RandomCrops(torch.utils.data.Dataset):
    """Random crops with random horizontal flips from images held in memory (uint8).

    With ``downscale < 1`` every crop is taken at a random scale s in [downscale, 1]: a square of
    patch/s pixels, resized to the patch with an antialiasing filter.  Photographs of megapixels
    then show the detail per pixel of smaller scenes (Kodak's are 768×512).  Images smaller than
    the patch are padded by reflection (replication where reflection cannot reach) so every crop
    has the full size.
    """

    def __init__(self, images: list[np.ndarray], patch: int, length: int, seed: int = 0, downscale: float = 1.0):
        if not 0 < downscale <= 1:
            raise CodecError(f"downscale must be in (0, 1], not {downscale}")
        self.images = images
        self.patch = patch
        self.length = length
        self.seed = seed
        self.downscale = downscale

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        # Crop i depends only on (seed, i): workers, restarts and resumes see the same stream.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        h, w, _ = img.shape
        p = self.patch
        size = p
        if self.downscale < 1:
            s = self.downscale + (1 - self.downscale) * float(torch.rand((), generator=g))
            size = max(p, min(round(p / s), h, w))  # never past the image: small ones stay at scale 1
        y = int(torch.randint(max(h - size, 0) + 1, (1,), generator=g))
        x = int(torch.randint(max(w - size, 0) + 1, (1,), generator=g))
        crop = torch.from_numpy(np.array(img[y : y + size, x : x + size])).permute(2, 0, 1)
        crop = crop.float().div_(255)
        if size != p and min(crop.shape[1:]) >= size:
            crop = F.interpolate(crop[None], size=(p, p), mode="bilinear", antialias=True, align_corners=False)[0]
            crop = crop.clamp_(0, 1)
        if crop.shape[1] < p or crop.shape[2] < p:
            crop = pad_image(crop[None], p, p)[0]
        if bool(torch.randint(2, (1,), generator=g)):
            crop = crop.flip(-1)
        return crop


class CropIndices(torch.utils.data.Sampler):
    """Crop numbers for one rank: step k of rank r takes crops (k·world + r)·batch … + batch − 1.

    Every rank sees different crops, and a resumed run continues the stream where it stopped.
    """

    def __init__(self, start_step: int, batch: int, rank: int, world: int):
        self.start_step, self.batch, self.rank, self.world = start_step, batch, rank, world

    def __iter__(self):
        k = self.start_step
        while True:
            first = (k * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)
            k += 1


def load_images(folders: Path | list[Path]) -> list[np.ndarray]:
    """Every image under one folder or several, decoded to uint8 RGB and held in memory.

    A folder given k times appears k times in the list (the same arrays, held once): crops are drawn
    uniformly over the list, so repeating a folder draws k times as many crops from each of its images.
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    images, loaded = [], {}
    for folder in folders:
        key = Path(folder).resolve()
        if key not in loaded:
            files = find_images(Path(folder))
            if not files:
                raise InputError(f"no images found in {folder}")
            loaded[key] = [load_rgb_array(f) for f in files]
        images.extend(loaded[key])
    return images


def crop_loader(opts: TrainOptions, step: int, rank: int, world: int, device: torch.device):
    """An endless stream of batches of crops of ``opts.data``, continuing at ``step``."""
    dataset = RandomCrops(load_images(opts.data), opts.patch, length=10**9, seed=opts.seed, downscale=opts.downscale)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=opts.batch_size,
        shuffle=False,
        sampler=CropIndices(step, opts.batch_size, rank, world),
        num_workers=opts.workers,
        persistent_workers=opts.workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(opts.seed),
    )
