"""Torch datasets and samplers over `LabeledImages`.

Determinism: the training augmentation of a sample depends only on ``(seed, epoch, index)``. The
sampler hands the dataset ``(index, sample_seed)`` pairs; the dataset seeds torch's generator with
``sample_seed`` inside `torch.random.fork_rng` (so the caller's random state is untouched) before
running the transform. The data order is a permutation seeded by ``seed + epoch`` (as
`torch.utils.data.DistributedSampler`). Therefore a run is reproducible for any number of DataLoader
workers, and a resumed run sees exactly the samples and augmentations of an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from cral_model.data.nih import LabeledImages

__all__ = ["EpochSampler", "ImageDataset", "load_image", "sample_seed"]

_MASK64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch (splitmix64 of the three numbers)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def load_image(path: str) -> np.ndarray:
    """Read an image file as a 2-D grey array.

    8-bit images (grey, RGB with equal channels, palette) come back as uint8 (H, W); 16-bit grey
    as uint16; other modes are converted to 8-bit grey. The conversion to [0, 1] happens in
    `cral_model.preprocessing.to_unit_float`. A cache reference (`cral_model.data.cache.cache_ref`)
    comes back as its pre-resized uint8 row.
    """
    from PIL import Image

    from cral_model.data.cache import read_cache_ref

    cached = read_cache_ref(path)
    if cached is not None:
        return cached

    with Image.open(path) as im:
        if im.mode in ("L", "I;16", "I;16B", "I;16L"):
            arr = np.array(im)
        elif im.mode == "I":
            arr = np.array(im)
            arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr
        else:
            arr = np.array(im.convert("L"))
    return arr


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Images + labels -> ``(image (C, S, S) float32, labels (K,) float32, index int)``.

    Args:
        images: the labelled images.
        transform: ``image ndarray -> tensor``; the training transform draws from torch's global
            generator, which this dataset seeds per sample.
        cache: keep decoded images in memory (per worker process; use persistent workers). Worth it
            for small images (the 64 px set), not for the 1024 px download.
    """

    def __init__(
        self,
        images: LabeledImages,
        transform: Callable[[np.ndarray], torch.Tensor],
        *,
        cache: bool = False,
    ) -> None:
        self.images = images
        self.transform = transform
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._labels = torch.from_numpy(np.ascontiguousarray(images.labels, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def _pixels(self, index: int) -> np.ndarray:
        if self.cache:
            arr = self._cache.get(index)
            if arr is None:
                arr = load_image(self.images.paths[index])
                self._cache[index] = arr
            return arr
        return load_image(self.images.paths[index])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        if isinstance(key, tuple):
            index, seed = key
        else:
            index, seed = int(key), None
        pixels = self._pixels(index)
        if seed is None:
            x = self.transform(pixels)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x = self.transform(pixels)
        return x, self._labels[index], index


class EpochSampler(Sampler[Any]):
    """Per-epoch seeded order, sharded over ranks; yields ``(index, sample_seed)``.

    Same index order and padding as `torch.utils.data.DistributedSampler` (permutation from a
    generator seeded with ``seed + epoch``; padded by repeating the start so every rank gets the same
    count; rank r takes every ``num_replicas``-th index starting at r). With ``num_replicas`` ranks each
    taking batches of ``b``, step k of all ranks together covers exactly the samples that one process
    with batch ``num_replicas * b`` sees at step k.

    Args:
        length: dataset size N.
        shuffle: permute (training) or keep order (evaluation).
        seed: base seed.
        num_replicas / rank: distributed world size and this process's rank.
        augment_seeds: yield ``(index, seed)`` pairs (training) or plain indices (evaluation).
    """

    def __init__(
        self,
        length: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        augment_seeds: bool = True,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.num_replicas, self.rank, self.augment_seeds = num_replicas, rank, augment_seeds
        self.epoch = 0
        self.num_samples = math.ceil(length / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        pad = self.total_size - len(order)
        if pad > 0:
            order += (order * math.ceil(pad / max(len(order), 1)))[:pad]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[Any]:
        for i in self.indices():
            yield (i, sample_seed(self.seed, self.epoch, i)) if self.augment_seeds else i

    def __len__(self) -> int:
        return self.num_samples
