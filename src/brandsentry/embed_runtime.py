"""Execution runtimes of the Embedder's backbone: PyTorch itself, ONNX Runtime or OpenVINO on CPU.

`runtime=onnx|openvino` exports the very same timm module (its weights, its pooling) to ONNX once, caches the
file under `cache_dir` keyed by everything that shapes the graph, and runs it with ONNX Runtime or compiles it
with OpenVINO (`embed_openvino`). Nothing is downloaded. Both give the PyTorch vectors up to float rounding
(checked against PyTorch on a probe batch every time a session is built, at most `ONNX_TOLERANCE` apart), so
the embedder identity is the same: an index built with one runtime is searched with the others. On the
2-core dev box, Lite0 letterbox + GeM, batch 32, one thread: PyTorch channels_last ~17 ms/image, ONNX Runtime
~12.8, OpenVINO ~6.2 (scripts/bench_embed.py --compare), so `auto` takes the fastest one installed.
`precision=int8` (OpenVINO only) runs an NNCF-quantised model instead: other vectors, another identity.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from brandsentry.errors import ConfigError
from brandsentry.files import atomic_write_bytes

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "openvino")
CPU_PREFERENCE = ("openvino", "onnx")  # what `auto` takes on CPU, fastest first (measured, see above)
PRECISIONS = ("fp32", "int8")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # max |difference| of unit vectors between PyTorch and an exported runtime on the probe
_PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}  # onnx: the exporter


def missing_packages(runtime: str = "onnx") -> list[str]:
    """What `runtime` (onnx | openvino) needs and this environment lacks."""
    return [name for name in _PACKAGES[runtime] if importlib.util.find_spec(name) is None]


def resolve_runtime(runtime: str, device: torch.device, precision: str = "fp32") -> str:
    """`auto` = the fastest installed CPU runtime (OpenVINO, else ONNX Runtime, else PyTorch) on CPU,
    PyTorch on CUDA; int8 runs on OpenVINO only."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown embedder.runtime {runtime!r}; one of {list(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown embedder.precision {precision!r}; one of {list(PRECISIONS)}")
    if precision == "int8":
        if runtime not in ("auto", "openvino") or device.type != "cpu":
            raise ConfigError(
                f"embedder.precision=int8 runs on OpenVINO on the CPU only, not runtime={runtime} on "
                f"{device.type}; use runtime=openvino (or auto) on the CPU, or precision=fp32"
            )
        runtime = "openvino"
    if runtime == "auto":
        installed = [name for name in CPU_PREFERENCE if not missing_packages(name)]
        return installed[0] if device.type == "cpu" and installed else "torch"
    if runtime != "torch":
        if device.type != "cpu":
            raise ConfigError(
                f"embedder.runtime={runtime} runs on the CPU only; use runtime=torch (or auto) on CUDA"
            )
        if missing_packages(runtime):
            raise ConfigError(f"embedder.runtime={runtime} needs the package(s) {missing_packages(runtime)}")
    return runtime


def build_backbone(
    runtime: str,
    model: torch.nn.Module,
    key_parts: dict,
    input_size: int,
    threads: int | None,
    cache_dir: str | Path | None,
    int8_model: Path | None = None,
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The backbone as a function of a float32 NCHW batch for `runtime` (None for torch: the module itself).

    `int8_model`: the quantised IR to run instead of the exported fp32 graph (OpenVINO only; not checked
    against PyTorch, it is meant to differ: its gate ran when it was made, `embed_int8`).
    """
    if runtime == "torch":
        return None
    if int8_model is not None:
        from brandsentry.embed_openvino import OpenVinoBackbone

        return OpenVinoBackbone(int8_model, threads)
    path = cached_export(model, key_parts, input_size, resolve_cache_dir(cache_dir))
    if runtime == "onnx":
        backbone = OnnxBackbone(path, threads)
    else:
        from brandsentry.embed_openvino import OpenVinoBackbone

        backbone = OpenVinoBackbone(path, threads)
    check_against_torch(backbone, model, input_size, f"{runtime} ({path})")
    return backbone


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """`embedder.onnx_cache`, or the per-user temp folder when it is null."""
    return Path(str(cache_dir)).expanduser() if cache_dir else default_cache_dir()


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"brandsentry-onnx-{os.getuid()}"


class OnnxBackbone:
    """The backbone as an ONNX Runtime session: (n, 3, S, S) float32 -> (n, dim) pooled features."""

    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        # 0 = ONNX Runtime's default (all cores); scoring passes its model_threads (1 per lane on CPU)
        options.intra_op_num_threads = int(threads) if threads else 0
        options.log_severity_level = 3
        # no busy-waiting between operators: on a shared or oversubscribed CPU it only burns cycles
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def check_against_torch(
    backbone: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, input_size: int, what: str
) -> None:
    """Refuse a runtime that does not reproduce the PyTorch module (a stale or foreign cache file)."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, input_size, input_size, generator=generator)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(model(probe).float(), dim=1).numpy()
    got = normalise(backbone(probe.numpy()))
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not difference <= ONNX_TOLERANCE:
        raise RuntimeError(
            f"{what} disagrees with PyTorch by {difference:.2e} (> {ONNX_TOLERANCE}) on the probe batch; "
            "delete the cached file or use embedder.runtime=torch"
        )


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as torch.nn.functional.normalize (eps 1e-12)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.float32(1e-12))


def cached_export(model: torch.nn.Module, key_parts: dict, input_size: int, cache_dir: Path) -> Path:
    """The ONNX file of `model` under `cache_dir` (exported now when missing; written atomically)."""
    import timm

    parts = {**key_parts, "input_size": input_size, "opset": ONNX_OPSET, "torch": torch.__version__,
             "timm": timm.__version__, "module": _module_digest(model)}  # fmt: skip
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir / f"{parts.get('arch', 'model')}-{key}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, input_size, input_size)
    exported = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    # The TorchScript exporter (dynamo=False) needs only the `onnx` package; the torch.export one would
    # also need onnxscript. It warns that it is legacy: this is a deliberate choice, not news to the user.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            exported,
            (dummy,),
            buffer,
            dynamo=False,
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )
    # concurrent exporters (scoring lanes) write the same bytes: last one wins
    atomic_write_bytes(path, buffer.getvalue())
    log.info("exported %s to %s", parts.get("arch"), path)
    return path


def _module_digest(model: torch.nn.Module) -> str:
    """sha256 over the module's structure and every parameter/buffer: any change means another file."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
