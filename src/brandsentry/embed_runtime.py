"""Execution runtimes of the Embedder's backbone: PyTorch itself, or ONNX Runtime on CPU.

`runtime=onnx` exports the very same timm module (its weights, its pooling) to ONNX once, caches the file
under `cache_dir` keyed by everything that shapes the graph, and runs it with ONNX Runtime. Nothing is
downloaded. The ONNX path gives the same vectors up to float rounding (checked against PyTorch on a probe
batch every time a session is built, at most `ONNX_TOLERANCE` apart), so the embedder identity is the same:
an index built with one runtime is searched with the other. On the 2-core dev box Lite0 runs ~1.3-1.5x
faster per thread in ONNX Runtime than in PyTorch channels_last (scripts/bench_embed.py).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from brandsentry.errors import ConfigError
from brandsentry.files import atomic_write_bytes

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # max |difference| of unit vectors between PyTorch and ONNX Runtime on the probe batch


def missing_packages() -> list[str]:
    """What `runtime=onnx` needs and this environment lacks: onnx (the exporter) and onnxruntime."""
    import importlib.util

    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """`auto` = ONNX Runtime on CPU when it is installed, PyTorch otherwise (and always on CUDA)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown embedder.runtime {runtime!r}; one of {list(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if device.type == "cpu" and not missing_packages() else "torch"
    if runtime == "onnx":
        if device.type != "cpu":
            raise ConfigError(
                "embedder.runtime=onnx runs on the CPU only; use runtime=torch (or auto) on CUDA"
            )
        if missing_packages():
            raise ConfigError(f"embedder.runtime=onnx needs the package(s) {missing_packages()}")
    return runtime


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"brandsentry-onnx-{os.getuid()}"


class OnnxBackbone:
    """The backbone as an ONNX Runtime session: (n, 3, S, S) float32 -> (n, dim) pooled features."""

    def __init__(
        self,
        model: torch.nn.Module,
        key_parts: dict,
        input_size: int,
        threads: int | None,
        cache_dir: str | Path | None = None,
    ):
        import onnxruntime as ort

        self.input_size = input_size
        cache_dir = Path(str(cache_dir)).expanduser() if cache_dir else default_cache_dir()
        self.path = _cached_export(model, key_parts, input_size, cache_dir)
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
        self._check_against(model)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def _check_against(self, model: torch.nn.Module) -> None:
        """Refuse a session that does not reproduce the PyTorch module (a stale or foreign cache file)."""
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(2, 3, self.input_size, self.input_size, generator=generator)
        with torch.inference_mode():
            expected = torch.nn.functional.normalize(model(probe).float(), dim=1).numpy()
        got = normalise(self(probe.numpy()))
        difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not difference <= ONNX_TOLERANCE:
            raise RuntimeError(
                f"ONNX Runtime disagrees with PyTorch by {difference:.2e} (> {ONNX_TOLERANCE}) on the probe "
                f"batch; delete {self.path} or use embedder.runtime=torch"
            )


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as torch.nn.functional.normalize (eps 1e-12)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.float32(1e-12))


def _cached_export(model: torch.nn.Module, key_parts: dict, input_size: int, cache_dir: Path) -> Path:
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
