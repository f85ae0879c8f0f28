"""Fine-tune the embedder on brand references: metric learning (ArcFace) under strong augmentation.

Each reference label (a product) is a class; an additive angular margin on the L2-normalised pooled
features pulls a product's views together and pushes other products away, which is what nearest-neighbour
search needs. The augmentation imitates marketplace photos (crops, perspective, light, blur, JPEG-like
softness) but never mirrors: a mirrored logo is a counterfeit tell the embedding must keep seeing.

Only the last `train_stages` stages and the head convolution learn; batch-norm statistics stay frozen
(`eval()` mode), so small CPU batches are safe and the rest of the network keeps its ImageNet features.
The result is a plain state dict: `embedder.weights=<file>` loads it like any other weights file, and its
sha256 becomes part of the embedder identity, so an index built with other weights is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from brandsentry.config import Workspace
from brandsentry.embed import EmbedderSettings, create_backbone, preprocessing_for, set_pooling
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.files import atomic_write
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.settings import load_settings


class FinetuneError(BrandsentryError):
    """Fine-tuning cannot run on the given references (fewer than two labels, nothing decodable)."""


@dataclass(frozen=True)
class FinetuneSettings:
    """The `finetune` config group (configs/finetune/), validated."""

    enabled: bool  # the suites fine-tune before they embed (finetune_embedder itself ignores it)
    epochs: int
    batch_size: int
    lr: float  # backbone stages that learn
    head_lr: float  # the ArcFace class weights
    weight_decay: float
    margin: float  # additive angular margin (radians)
    scale: float
    train_stages: int  # the last N of the backbone's stages learn; the others stay frozen
    min_scale: float  # smallest crop area (share of the image) of the random resized crop
    input_size: int | None  # None: the embedder's
    device: str  # auto = cuda when available
    threads: int | None  # torch intra-op threads on CPU (None: torch's default)
    num_workers: int  # augmentation worker processes

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(
                f"finetune needs epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}"
            )
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"finetune.min_scale must be in (0, 1], got {self.min_scale}")

    @classmethod
    def from_config(cls, finetune_cfg) -> FinetuneSettings:
        return load_settings(cls, finetune_cfg, "finetune")


@dataclass(frozen=True)
class FinetuneReport:
    """Where the fine-tuned weights went and how training went."""

    weights: Path
    images: int
    labels: int
    epochs: int
    first_epoch_loss: float
    last_epoch_loss: float
    seconds: float
    failed: tuple[str, ...] = ()

    def params(self) -> dict[str, str]:
        return {
            "finetune_weights": str(self.weights),
            "finetune_images": str(self.images),
            "finetune_labels": str(self.labels),
            "finetune_epochs": str(self.epochs),
            "finetune_loss": f"{self.first_epoch_loss:.4f} -> {self.last_epoch_loss:.4f}",
            "finetune_seconds": f"{self.seconds:.0f}",
        }


class ArcFace(torch.nn.Module):
    """Cosine classifier with an additive angular margin on the true class (Deng et al., 2019)."""

    def __init__(self, dim: int, classes: int, margin: float, scale: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(classes, dim)))
        self.margin, self.scale = margin, scale

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = torch.nn.functional.normalize(features) @ torch.nn.functional.normalize(self.weight).T
        theta = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(torch.clamp(theta + self.margin, max=math.pi))
        one_hot = torch.nn.functional.one_hot(labels, cosine.shape[1]).bool()
        logits = torch.where(one_hot, target, cosine) * self.scale
        return torch.nn.functional.cross_entropy(logits, labels)


def augmentation(input_size: int, min_scale: float, mean, std):
    """Marketplace-photo augmentation of a uint8 (3, H, W) tensor -> normalised float (3, S, S); no mirroring."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(input_size, scale=(min_scale, 1.0), ratio=(0.7, 1.4), antialias=True),
            v2.RandomPerspective(distortion_scale=0.25, p=0.5),
            v2.RandomApply([v2.RandomRotation(12)], p=0.5),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.03),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomGrayscale(p=0.05),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


class AugmentedImages(torch.utils.data.Dataset):
    """Decoded references (uint8 HWC, decoded once) -> (augmented tensor, label index)."""

    def __init__(self, images: list[np.ndarray], labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        pixels = torch.from_numpy(np.ascontiguousarray(self.images[index].transpose(2, 0, 1)))
        return self.transform(pixels), int(self.labels[index])


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainable_parameters(model: torch.nn.Module, train_stages: int) -> list[torch.nn.Parameter]:
    """Freeze everything but the last `train_stages` stages and the head convolution; return what learns."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    stages = list(getattr(model, "blocks", []))
    if not stages:
        raise ConfigError(f"{type(model).__name__} has no `blocks` stages to fine-tune")
    learning = stages[len(stages) - min(train_stages, len(stages)) :] if train_stages > 0 else []
    learning += [getattr(model, name) for name in ("conv_head", "bn2") if hasattr(model, name)]
    parameters = [p for module in learning for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    return parameters


def weights_path(cfg: DictConfig, suite: str) -> Path:
    """A new file for fine-tuned weights under the workspace's runs/finetune/."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Workspace.from_config(cfg).runs_dir / "finetune" / f"{suite}-{stamp}.pth"


def finetune_embedder(
    cfg: DictConfig, paths: Sequence[str | Path], labels: Sequence[str], out: Path, progress: bool = False
) -> FinetuneReport:
    """Fine-tune `cfg.embedder` on labelled reference images; write the backbone's state dict to `out`."""
    from tqdm import tqdm

    settings = FinetuneSettings.from_config(cfg.finetune)
    started = time.perf_counter()
    device = torch.device(
        "cuda" if settings.device == "auto" and torch.cuda.is_available() else
        ("cpu" if settings.device == "auto" else settings.device)
    )  # fmt: skip
    if settings.threads is not None and device.type == "cpu":
        torch.set_num_threads(int(settings.threads))
    seed = int(cfg.seed)
    torch.manual_seed(seed)
    embedder = EmbedderSettings.from_config(cfg.embedder)
    model, _ = create_backbone(embedder.arch, embedder.weights, embedder.seed)
    # learn under the pooling the embedder will use (GeM has no parameters: the state dict is unchanged)
    set_pooling(model, embedder.pool, embedder.gem_p)
    preprocessing = preprocessing_for(model, settings.input_size or embedder.input_size)
    limits = DecodeLimits.from_config(cfg.images)

    images, kept_labels, failed = [], [], []
    for path, label in zip(paths, labels, strict=True):
        try:
            images.append(decode_image(path, limits, target_size=preprocessing.resize_size))
            kept_labels.append(str(label))
        except ImageDecodeError as error:
            failed.append(f"{path}: {error.reason}")
    classes = sorted(set(kept_labels))
    if len(classes) < 2:
        raise FinetuneError(
            f"fine-tuning needs references of >= 2 labels, got {len(classes)} ({len(images)} images)"
        )
    label_index = np.array([classes.index(label) for label in kept_labels])

    model = model.to(device).eval()  # frozen batch-norm statistics and no dropout, also while learning
    dim = int(
        model(torch.zeros(1, 3, preprocessing.input_size, preprocessing.input_size, device=device)).shape[1]
    )
    head = ArcFace(dim, len(classes), settings.margin, settings.scale).to(device)
    optimiser = torch.optim.AdamW(
        [
            {"params": trainable_parameters(model, settings.train_stages), "lr": settings.lr},
            {"params": head.parameters(), "lr": settings.head_lr},
        ],
        weight_decay=settings.weight_decay,
    )
    transform = augmentation(
        preprocessing.input_size, settings.min_scale, preprocessing.mean, preprocessing.std
    )
    loader = torch.utils.data.DataLoader(
        AugmentedImages(images, label_index, transform),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(images) > settings.batch_size,
        num_workers=settings.num_workers,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=settings.num_workers > 0,
    )
    steps = settings.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[settings.lr, settings.head_lr], total_steps=steps, pct_start=0.15
    )
    epoch_losses = []
    with tqdm(total=steps, desc="finetune", unit="batch", disable=not progress) as bar:
        for _ in range(settings.epochs):
            total, count = 0.0, 0
            for batch, targets in loader:
                loss = head(model(batch.to(device)), targets.to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                value = loss.item()
                total, count = total + value * len(targets), count + len(targets)
                bar.set_postfix(loss=f"{value:.3f}")
                bar.update(1)
            epoch_losses.append(total / count)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    atomic_write(out, lambda handle: torch.save(state, handle))
    return FinetuneReport(
        weights=out,
        images=len(images),
        labels=len(classes),
        epochs=settings.epochs,
        first_epoch_loss=epoch_losses[0],
        last_epoch_loss=epoch_losses[-1],
        seconds=time.perf_counter() - started,
        failed=tuple(failed),
    )
