"""The embedding stage: a timm backbone with its own preprocessing turns images into L2-normalised vectors.

Weights come only from local files (a PyPI weights package, a state dict path) or an explicit `random`
init: nothing is ever downloaded, and a missing or ill-fitting weights file is an error, never a silent
random init. `EmbedderIdentity` says exactly which vectors these are; an index records it and refuses
vectors of another identity.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import timm
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from brandsentry.embed_openvino import Int8Settings, int8_files, int8_sha256
from brandsentry.embed_runtime import PRECISIONS, RUNTIMES, build_backbone, normalise, resolve_runtime
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.files import file_sha256
from brandsentry.image_batches import ImageBatches
from brandsentry.images import DecodeLimits, ImageDecodeError
from brandsentry.settings import default_settings, load_settings

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
VIEWS = ("center", "full")  # Preprocessing.view
POOLS = ("avg", "gem")  # how the backbone's last feature map becomes a vector
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_GEM_P = 3.0


class WeightsError(BrandsentryError):
    """A weights file is missing, unreadable or does not fit the architecture."""


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone sees of an image, as an (input_size x input_size) normalised tensor.

    `view="center"`: timm's eval transform: resize the shorter side to floor(input_size / crop_pct),
    centre-crop, normalise. Only the centre crop is resampled (PIL `box`), which gives the same pixels as
    resize-then-crop without materialising a huge intermediate for extreme aspect ratios.
    `view="full"`: the whole image letterboxed: its longer side resized to input_size, centred on a square
    of the normalisation mean (zero after normalisation). Nothing of a tall or wide package is cut off.
    """

    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    view: str = "center"

    def __post_init__(self):
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; one of {sorted(_INTERPOLATIONS)}"
            )
        if self.view not in VIEWS:
            raise ValueError(f"unknown embedder view {self.view!r}; one of {list(VIEWS)}")

    @property
    def resize_size(self) -> int:
        """Shorter side after the resize; also the size the decoder must at least deliver."""
        return math.floor(self.input_size / self.crop_pct)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, input_size, input_size) float32, normalised."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        image = Image.fromarray(rgb)
        if self.view == "full":
            return self._letterbox(image)
        width, height = image.size
        short = self.resize_size
        if width <= height:
            resized = (short, int(short * height / width))
        else:
            resized = (int(short * width / height), short)
        size = self.input_size
        left = int(round((resized[0] - size) / 2.0))
        top = int(round((resized[1] - size) / 2.0))
        scale_x, scale_y = width / resized[0], height / resized[1]
        box = (left * scale_x, top * scale_y, (left + size) * scale_x, (top + size) * scale_y)
        crop = image.resize((size, size), _INTERPOLATIONS[self.interpolation], box=box)
        return torch.from_numpy(np.ascontiguousarray(self._normalise(crop).transpose(2, 0, 1)))

    def _normalise(self, image: Image.Image) -> np.ndarray:
        scale = np.float32(1.0 / 255.0) / np.asarray(self.std, dtype=np.float32)
        shift = np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)
        return np.asarray(image, dtype=np.float32) * scale - shift

    def _letterbox(self, image: Image.Image) -> torch.Tensor:
        """The whole image, longer side = input_size, centred on zeros (the mean colour once normalised)."""
        width, height = image.size
        size = self.input_size
        fitted = (
            max(1, round(width * size / max(width, height))),
            max(1, round(height * size / max(width, height))),
        )
        resized = image.resize(fitted, _INTERPOLATIONS[self.interpolation])
        canvas = np.zeros((3, size, size), dtype=np.float32)
        left, top = (size - fitted[0]) // 2, (size - fitted[1]) // 2
        canvas[:, top : top + fitted[1], left : left + fitted[0]] = self._normalise(resized).transpose(
            2, 0, 1
        )
        return torch.from_numpy(canvas)


class GeneralizedMeanPool(torch.nn.Module):
    """GeM pooling, (mean over space of x^p)^(1/p) -> (n, C): p=1 is average pooling, large p tends to max."""

    def __init__(self, p: float):
        super().__init__()
        if not p >= 1:
            raise ConfigError(f"GeM exponent must be >= 1, got {p}")
        self.p = float(p)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:  # part of repr(model), hence of anything keyed by the module's structure
        return f"p={self.p:g}"


def set_pooling(model: torch.nn.Module, pool: str, gem_p: float | None = None) -> None:
    """Make `model` (a timm backbone without classifier) pool its feature map by `pool` (avg | gem)."""
    if pool not in POOLS:
        raise ConfigError(f"unknown embedder.pool {pool!r}; one of {list(POOLS)}")
    if pool == "avg":
        if isinstance(getattr(model, "global_pool", None), GeneralizedMeanPool):
            raise ConfigError("this backbone already pools by GeM; build a fresh one for average pooling")
        return
    if not isinstance(getattr(model, "global_pool", None), torch.nn.Module):
        raise ConfigError(f"{type(model).__name__} has no global_pool module to replace with GeM")
    model.global_pool = GeneralizedMeanPool(DEFAULT_GEM_P if gem_p is None else float(gem_p))


def pooling_of(model: torch.nn.Module) -> tuple[str, float | None]:
    """(pool, gem_p) of a backbone: ("gem", p) after `set_pooling(..., "gem", p)`, else ("avg", None)."""
    pool = getattr(model, "global_pool", None)
    return ("gem", pool.p) if isinstance(pool, GeneralizedMeanPool) else ("avg", None)


# Identity fields added after indexes were first saved, with the value every older embedder had: omitted
# from `to_dict` at that value, so an index or bundle saved before them keeps its identity (and key).
_LATER_FIELDS = {"view": "center", "pool": "avg", "gem_p": None, "precision": "fp32", "int8_sha256": None}


@dataclass(frozen=True)
class EmbedderIdentity:
    """Everything that decides what an embedding vector means; two embedders with equal identities agree."""

    arch: str
    weights_sha256: str
    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    dim: int
    view: str = "center"
    pool: str = "avg"
    gem_p: float | None = None
    precision: str = "fp32"  # int8: an NNCF-quantised backbone, its IR files pinned by int8_sha256
    int8_sha256: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EmbedderIdentity:
        known = {f.name for f in fields(cls)}
        required = known - set(_LATER_FIELDS)
        if not required <= set(data) <= known:
            raise ValueError(
                f"embedder identity fields differ: missing {sorted(required - set(data))}, "
                f"unexpected {sorted(set(data) - known)}"
            )
        gem_p = data.get("gem_p")
        return cls(
            arch=str(data["arch"]),
            weights_sha256=str(data["weights_sha256"]),
            input_size=int(data["input_size"]),
            crop_pct=float(data["crop_pct"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data["interpolation"]),
            dim=int(data["dim"]),
            view=str(data.get("view", "center")),
            pool=str(data.get("pool", "avg")),
            gem_p=None if gem_p is None else float(gem_p),
            precision=str(data.get("precision", "fp32")),
            int8_sha256=None if data.get("int8_sha256") is None else str(data["int8_sha256"]),
        )

    def key(self) -> str:
        """Short stable hash, e.g. for file names and log lines."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            self.input_size, self.crop_pct, self.mean, self.std, self.interpolation, self.view
        )


@dataclass(frozen=True)
class Embeddings:
    """Vectors handed to the index: row i of `vectors` (float32, L2-normalised) belongs to `ids[i]`."""

    ids: np.ndarray
    vectors: np.ndarray

    def __post_init__(self):
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32 or len(self.ids) != len(self.vectors):
            raise ValueError(
                f"embeddings need float32 (n, d) vectors and n ids, got {self.vectors.shape} "
                f"{self.vectors.dtype} and {len(self.ids)} ids"
            )


def resolve_weights_file(weights: str) -> Path:
    """`pypi:<stem>` -> the file shipped by the `<stem>-pytorch-model` package; anything else is a path."""
    if weights.startswith("pypi:"):
        stem = weights.removeprefix("pypi:")
        module_name = stem.replace("-", "_") + "_pytorch_model"
        class_name = "".join(part.capitalize() for part in stem.split("-")) + "ModelFile"
        try:
            path = Path(getattr(importlib.import_module(module_name), class_name).get_model_file_path())
        except (ImportError, AttributeError):
            raise WeightsError(
                f"weights {weights!r}: package {stem}-pytorch-model is not installed "
                f"(no {module_name}.{class_name})"
            ) from None
    else:
        path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor mapping from a `torch.save` file (plain, or wrapped under 'state_dict'), safely unpickled."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightsError(f"weights file {path} is not a readable state dict: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return state


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet layout.

    `_blocks.N` walks timm's stages in order; depthwise-separable blocks (no expansion conv) and
    inverted-residual blocks name their layers differently.
    """
    blocks = [
        (s, i, block) for s, stage in enumerate(getattr(model, "blocks", [])) for i, block in enumerate(stage)
    ]
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    renamed = {}
    for key, tensor in state.items():
        module, _, rest = key.partition(".")
        try:
            if module == "_blocks":
                number, layer, param = rest.split(".", 2)
                stage, index, block = blocks[int(number)]
                names = inverted if hasattr(block, "conv_pwl") else separable
                renamed[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = tensor
            else:
                renamed[f"{top[module]}.{rest}"] = tensor
        except (KeyError, IndexError, ValueError):
            raise WeightsError(
                f"key {key!r} has no place in {type(model).__name__} with {len(blocks)} blocks"
            ) from None
    return renamed


def create_full_model(arch: str, weights: str, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """The timm model with the classifier its weights carry (eval mode) and the weights' sha256.

    `weights`: `pypi:<stem>`, a state-dict path, or `random` (seeded, identity `random:<seed>`).
    Weights load strictly, so a renaming or architecture mismatch cannot pass unnoticed.
    """
    if not timm.is_model(arch):
        raise ValueError(f"unknown backbone {arch!r}")
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(arch, pretrained=False)
        return model.eval(), f"random:{seed}"
    path = resolve_weights_file(weights)
    state = read_state_dict(path)
    model = timm.create_model(arch, pretrained=False)
    if "_conv_stem.weight" in state:
        state = lukemelas_to_timm(state, model)
    classifier = model.pretrained_cfg.get("classifier")
    if isinstance(classifier, str):
        head = state.get(f"{classifier}.weight")
        num_classes = 0 if head is None else int(head.shape[0])
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights file {path} does not fit {arch!r}: {str(exc)[:500]}") from None
    return model.eval(), file_sha256(path)


def create_backbone(arch: str, weights: str, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """The timm model without classifier (it returns pooled features) and the weights' sha256."""
    model, weights_sha256 = create_full_model(arch, weights, seed)
    model.reset_classifier(0)
    return model, weights_sha256


def preprocessing_for(
    model: torch.nn.Module, input_size: int | None = None, view: str = "center"
) -> Preprocessing:
    """The eval preprocessing timm's pretrained config prescribes for `model`, optionally at another size
    or with the whole image letterboxed (`view="full"`) instead of the centre crop."""
    data = timm.data.resolve_model_data_config(model)
    try:
        return Preprocessing(
            input_size=int(input_size or data["input_size"][-1]),
            crop_pct=float(data["crop_pct"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data["interpolation"]),
            view=view,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class EmbedderSettings:
    """The `embedder` config group (configs/embedder/): which backbone and weights, what it sees, how it runs.

    arch, weights, input_size, seed, view, pool, gem_p and precision decide the vectors (the
    `EmbedderIdentity`; int8 also the calibration, `int8`); the others only how fast they come.
    """

    arch: str  # a timm architecture
    weights: str  # pypi:<package stem> | a state-dict path | random
    input_size: int | None  # None = the backbone's pretrained input size
    batch_size: int
    device: str  # auto | cpu | cuda
    amp: bool  # autocast fp16, on CUDA only
    channels_last: bool
    num_workers: int  # DataLoader decode workers
    threads: int | None  # intra-op threads on CPU; None = the runtime's own choice
    runtime: str  # auto | torch | onnx | openvino
    onnx_cache: str | None  # folder of the exported .onnx (and int8 IR) files; None = a per-user temp folder
    seed: int  # weights=random only
    view: str  # center | full
    pool: str  # avg | gem
    gem_p: float  # GeM exponent, used with pool=gem
    precision: str  # fp32 | int8 (OpenVINO, calibrated on the workspace's references: embed_int8)
    int8: Int8Settings

    @classmethod
    def from_config(cls, embedder_cfg: DictConfig | dict) -> EmbedderSettings:
        return load_settings(cls, embedder_cfg, "embedder")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"embedder.batch_size must be >= 1, got {self.batch_size}")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown embedder.device {self.device!r}; one of {', '.join(DEVICES)}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown embedder.runtime {self.runtime!r}; one of {list(RUNTIMES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown embedder.precision {self.precision!r}; one of {list(PRECISIONS)}")
        if self.view not in VIEWS:
            raise ConfigError(f"unknown embedder view {self.view!r}; one of {list(VIEWS)}")
        if self.pool not in POOLS:
            raise ConfigError(f"unknown embedder.pool {self.pool!r}; one of {list(POOLS)}")
        if self.pool == "gem" and not self.gem_p >= 1:
            raise ConfigError(f"GeM exponent must be >= 1, got {self.gem_p}")


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("embedder.device='cuda' but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown embedder.device {name!r}; one of auto, cpu, cuda")
    return torch.device(name)


class Embedder:
    """A backbone plus its preprocessing; batched, `inference_mode`, AMP on CUDA, unit-norm float32 output."""

    def __init__(
        self,
        model: torch.nn.Module,
        arch: str,
        weights_sha256: str,
        preprocessing: Preprocessing,
        device: torch.device,
        batch_size: int = 32,
        amp: bool = True,
        channels_last: bool = True,
        num_workers: int = 0,
        runtime: str = "torch",
        threads: int | None = None,
        onnx_cache: str | Path | None = None,
        int8_model: Path | None = None,
    ):
        """`int8_model`: the quantised IR (`embed_int8`) to run instead of the fp32 backbone (OpenVINO)."""
        self.device = device
        self.batch_size = batch_size
        self.amp = amp and device.type == "cuda"
        self.channels_last = channels_last
        self.num_workers = num_workers
        self.preprocessing = preprocessing
        self.model = model.eval().to(device)
        precision = "fp32" if int8_model is None else "int8"
        # runtime: how the backbone executes, never what the vectors mean (see embed_runtime); precision does
        self.runtime = resolve_runtime(runtime, device, precision)
        key = {"arch": arch, "weights_sha256": weights_sha256, "pooling": pooling_of(model)}
        try:
            self._backbone = build_backbone(
                self.runtime, self.model, key, preprocessing.input_size, threads, onnx_cache, int8_model
            )
        except Exception as exc:
            if runtime != "auto" or int8_model is not None:
                raise
            logging.getLogger(__name__).warning(
                "embedder.runtime=auto: %s backbone of %s failed (%s: %s); running PyTorch",
                self.runtime, arch, type(exc).__name__, exc,
            )  # fmt: skip
            self.runtime, self._backbone = "torch", None
        self.backbone_file: Path | None = getattr(self._backbone, "path", None)  # the ONNX / IR file run
        self.model_files = {} if int8_model is None else int8_files(int8_model)  # saved with an index
        if self.runtime == "torch" and channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        size = preprocessing.input_size
        self.identity = EmbedderIdentity(
            arch=arch,
            weights_sha256=weights_sha256,
            input_size=preprocessing.input_size,
            crop_pct=preprocessing.crop_pct,
            mean=preprocessing.mean,
            std=preprocessing.std,
            interpolation=preprocessing.interpolation,
            dim=int(self.embed_batch(torch.zeros(1, 3, size, size)).shape[1]),
            view=preprocessing.view,
            pool=pooling_of(model)[0],
            gem_p=pooling_of(model)[1],
            precision=precision,
            int8_sha256=None if int8_model is None else int8_sha256(int8_model),
        )

    @classmethod
    def from_config(
        cls, cfg: DictConfig | dict | EmbedderSettings, int8_model: Path | None = None
    ) -> Embedder:
        """Build from the `embedder` config group (a node, a plain dict of it, or its settings).

        precision=int8 needs `int8_model`, the quantised IR its index was built with: through
        `index_sync.embedder_for_index` (a saved index or bundle) or `embed_int8.calibrated_embedder`.
        """
        settings = cfg if isinstance(cfg, EmbedderSettings) else EmbedderSettings.from_config(cfg)
        if (settings.precision == "int8") != (int8_model is not None):
            raise ConfigError(
                f"embedder.precision={settings.precision} with {'an' if int8_model else 'no'} int8 model: an "
                "int8 embedder runs the quantised model its index was built with (`brandsentry index build "
                "embedder.precision=int8` makes one); fp32 runs none"
            )
        device = _resolve_device(settings.device)
        if settings.threads is not None and device.type == "cpu":
            torch.set_num_threads(settings.threads)
        model, weights_sha256 = create_backbone(settings.arch, settings.weights, settings.seed)
        set_pooling(model, settings.pool, settings.gem_p)
        return cls(
            model,
            settings.arch,
            weights_sha256,
            preprocessing_for(model, settings.input_size, settings.view),
            device,
            batch_size=settings.batch_size,
            amp=settings.amp,
            channels_last=settings.channels_last,
            num_workers=settings.num_workers,
            runtime=settings.runtime,
            threads=settings.threads,
            onnx_cache=settings.onnx_cache,
            int8_model=int8_model,
        )

    @property
    def dim(self) -> int:
        return self.identity.dim

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        return self.preprocessing(rgb)

    @torch.inference_mode()
    def embed_batch(self, batch: torch.Tensor) -> np.ndarray:
        """(n, 3, S, S) preprocessed tensor -> (n, dim) float32 unit vectors."""
        if self._backbone is not None:
            return normalise(self._backbone(batch.numpy()))
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            features = self.model(batch)
        return torch.nn.functional.normalize(features.float(), dim=1).cpu().numpy()

    def embed_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded RGB arrays -> (n, dim) float32 unit vectors, in order."""
        chunks = [
            self.embed_batch(
                torch.stack([self.preprocess(rgb) for rgb in images[start : start + self.batch_size]])
            )
            for start in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.empty((0, self.dim), dtype=np.float32)

    def loader(self, paths: Sequence[str | Path], limits: DecodeLimits) -> torch.utils.data.DataLoader:
        """Decode and preprocess in `num_workers` processes (JPEG draft to the resize size), in order."""
        batches = ImageBatches.consecutive(paths, self.batch_size, self.preprocessing, limits)
        return batches.loader(self.num_workers, pin_memory=self.device.type == "cuda")

    def embed_files(
        self,
        paths: Sequence[str | Path],
        ids: Sequence | None = None,
        limits: DecodeLimits | None = None,
        progress: bool = False,
    ) -> tuple[Embeddings, list[tuple[object, ImageDecodeError]]]:
        """Embed image files; every file ends up either in the embeddings or in the failures, in input order.

        `limits`: the decode limits (None: the `images` group's defaults, read on first use, not at import).
        """
        limits = limits or default_settings(DecodeLimits, "images")
        id_array = np.arange(len(paths)) if ids is None else np.asarray(ids)
        if len(id_array) != len(paths):
            raise ValueError(f"{len(id_array)} ids for {len(paths)} paths")
        id_list = id_array.tolist()
        vectors = np.empty((len(paths), self.dim), dtype=np.float32)
        embedded = np.zeros(len(paths), dtype=bool)
        failures = []
        with tqdm(total=len(paths), unit="img", desc="embed", disable=not progress) as bar:
            for batch in self.loader(paths, limits):
                if len(batch.indices):
                    vectors[batch.indices] = self.embed_batch(batch.tensor)
                    embedded[batch.indices] = True
                failures.extend((id_list[index], error) for index, error in batch.errors)
                bar.update(len(batch.indices) + len(batch.errors))
        return Embeddings(ids=id_array[embedded], vectors=vectors[embedded]), failures
