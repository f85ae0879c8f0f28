"""Image files -> decoded, preprocessed model batches: the one decode dataset of the project.

Embedding references, scoring listings and evaluating retrieval all decode through `ImageBatches`, so a
listing is decoded and preprocessed exactly as the references it is compared with. The dataset holds only
paths, the preprocessing and the decode limits (never a model, an index or a scoring context): it is
cheap to pickle into DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image


class Transform(Protocol):
    """What a batch applies to each decoded image: `embed.Preprocessing`, or a stack of its views."""

    @property
    def resize_size(self) -> int:
        """The shortest side the transform needs: JPEGs are decoded no larger than that."""
        ...

    def __call__(self, rgb: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class DecodedBatch:
    """Files [start, stop) as a decode worker hands them to the model.

    `indices` (ascending, into the dataset's paths) are the files decoded and preprocessed, stacked in
    `tensor`; `errors` holds (index, error) of the files that failed. With `keep_pixels` the decoded RGB
    images travel too, packed in one flat uint8 tensor (`pixels`: one shared-memory segment per batch
    instead of one per image), `shapes[i]` that of `indices[i]`, unpacked as zero-copy views by `images`.
    """

    start: int
    stop: int
    indices: np.ndarray
    tensor: torch.Tensor
    errors: list[tuple[int, ImageDecodeError]]
    pixels: torch.Tensor | None = None
    shapes: tuple[tuple[int, int, int], ...] = ()

    def pin_memory(self) -> DecodedBatch:
        """Called by the DataLoader when pin_memory is on (CUDA): faster, asynchronous host-to-device copy."""
        return replace(self, tensor=self.tensor.pin_memory())

    def images(self) -> list[np.ndarray]:
        """The decoded images of `indices`, in order (needs `keep_pixels`)."""
        if self.pixels is None:
            raise ValueError("this batch was decoded without keep_pixels: it carries no images")
        flat, images, offset = self.pixels.numpy(), [], 0
        for shape in self.shapes:
            size = shape[0] * shape[1] * shape[2]
            images.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return images


class ImageBatches(torch.utils.data.Dataset):
    """Item i = the files of `spans[i]` decoded, preprocessed and stacked: one model batch.

    Never raises for a bad file: a file that cannot be decoded, or that decodes but cannot be preprocessed
    (one odd file must not stop a day: a rerun would stop at the same file again), is an error of its
    batch. A None path is a file with nothing to decode (its caller knows why): in neither `indices`
    nor `errors`. `keep_pixels`: the decoded images travel with the batch (e.g. for the cues), so they
    are decoded at full size (up to `limits.max_side`) instead of drafted down to what the model needs.
    """

    def __init__(
        self,
        paths: Sequence[str | Path | None],
        spans: Sequence[tuple[int, int]],
        transform: Transform,
        limits: DecodeLimits,
        keep_pixels: bool = False,
    ):
        self.paths = list(paths)
        self.spans = list(spans)
        self.transform = transform
        self.limits = limits
        self.keep_pixels = keep_pixels

    @classmethod
    def consecutive(
        cls,
        paths: Sequence[str | Path | None],
        batch_size: int,
        transform: Transform,
        limits: DecodeLimits,
    ) -> ImageBatches:
        """Batches of `batch_size` consecutive files (the last one shorter)."""
        spans = [(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)]
        return cls(paths, spans, transform, limits)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, item: int) -> DecodedBatch:
        start, stop = self.spans[item]
        indices, tensors, images, errors = [], [], [], []
        for index in range(start, stop):
            path = self.paths[index]
            if path is None:
                continue
            try:
                rgb, tensor = self._decode(path)
            except ImageDecodeError as error:
                errors.append((index, error))
                continue
            indices.append(index)
            tensors.append(tensor)
            if self.keep_pixels:
                images.append(rgb)
        return DecodedBatch(
            start=start,
            stop=stop,
            indices=np.array(indices, dtype=np.int64),
            tensor=torch.stack(tensors) if tensors else torch.empty(0),
            errors=errors,
            pixels=_packed(images) if self.keep_pixels else None,
            shapes=tuple(image.shape for image in images),
        )

    def _decode(self, path: str | Path) -> tuple[np.ndarray, torch.Tensor]:
        target_size = None if self.keep_pixels else self.transform.resize_size
        rgb = decode_image(path, self.limits, target_size=target_size)
        try:
            return rgb, self.transform(rgb)
        except Exception as exc:  # file edge: an error of this file with the reason
            raise ImageDecodeError(path, "preprocess_failed", f"{type(exc).__name__}: {exc}") from None

    def loader(self, num_workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
        """The batches in order, decoded in `num_workers` processes (0: in this one, as they are asked for)."""
        return torch.utils.data.DataLoader(
            self, batch_size=None, num_workers=num_workers, pin_memory=pin_memory
        )


def _packed(images: list[np.ndarray]) -> torch.Tensor:
    """The images' pixels in one flat uint8 tensor, in shared memory when built in a decode worker."""
    pixels = torch.empty(sum(image.size for image in images), dtype=torch.uint8)
    if torch.utils.data.get_worker_info() is not None:
        pixels.share_memory_()  # filled in place: no second copy when it is sent to the main process
    flat, offset = pixels.numpy(), 0
    for image in images:
        flat[offset : offset + image.size] = image.reshape(-1)
        offset += image.size
    return pixels
