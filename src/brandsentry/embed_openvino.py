"""The backbone under OpenVINO on CPU: the exported ONNX graph in fp32, or its NNCF int8 quantisation.

fp32 compiles the very ONNX file `embed_runtime` exports (same graph, same weights), so it gives the PyTorch
vectors up to float rounding and keeps the embedder identity. int8 is NNCF post-training quantisation of that
graph, calibrated on sample images: other vectors (mean cosine ~0.95 to fp32 on GroZi-120 references), hence
another identity, pinned by the sha256 of the quantised IR files (`INT8_XML` + `INT8_BIN`) that travel with
the index built from it. Both compile with `INFERENCE_PRECISION_HINT=f32` so that a CPU with bf16 or AMX
does not silently run the float parts in lower precision (vectors must not depend on the machine), and
without CPU pinning: two scoring lanes of one thread each would otherwise both pin to the same core.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brandsentry.errors import ConfigError
from brandsentry.files import atomic_write_bytes

INT8_XML = "embedder-int8.xml"  # the quantised IR as saved beside an index version
INT8_BIN = "embedder-int8.bin"
POOLING_NODES = r"/global_pool/.*"  # the exported graph's pooling (timm's and GeM's `global_pool` module)


@dataclass(frozen=True)
class Int8Settings:
    """`embedder.int8`: how an int8 backbone is calibrated on the workspace's references and gated."""

    calibration_images: int  # NNCF calibration set size; fewer references are filled up with augmented views
    min_references: int  # below this many distinct references, int8 is refused (use precision=fp32)
    probe_images: int  # augmented reference views the accuracy gate searches with
    max_recall_drop: float  # gate: int8 self-retrieval R@1 at most this far below fp32's
    min_cosine: float  # gate: mean cosine of int8 to fp32 vectors of the probe views at least this
    seed: int  # which references and augmentations are drawn

    def __post_init__(self) -> None:
        for name in ("calibration_images", "min_references", "probe_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"embedder.int8.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.max_recall_drop <= 1.0:
            raise ConfigError(f"embedder.int8.max_recall_drop must be in [0, 1], got {self.max_recall_drop}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"embedder.int8.min_cosine must be in [-1, 1], got {self.min_cosine}")


class OpenVinoSession:
    """A model file compiled for the CPU, called like a one-input ONNX Runtime session: `session(x)` -> its
    outputs, in the model's order. Each calling thread gets an infer request of its own (a request serves
    one call at a time; the cue workers call one model from several threads)."""

    def __init__(self, path: Path, threads: int | None):
        self.path = Path(path)
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "ENABLE_CPU_PINNING": False,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:  # 0/None = OpenVINO's own choice (all cores); scoring passes 1 per lane on CPU
            config["INFERENCE_NUM_THREADS"] = int(threads)
        with signal_stack_kept():
            self._compiled = _core().compile_model(str(self.path), "CPU", config)
        self._requests = threading.local()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        # share_outputs=False: the result outlives the next call (the request reuses its output buffers)
        outputs = request.infer([np.ascontiguousarray(batch, dtype=np.float32)], share_outputs=False)
        return list(outputs.values())


class OpenVinoBackbone:
    """A compiled OpenVINO model: (n, 3, S, S) float32 -> (n, dim) pooled features (ONNX or IR file)."""

    def __init__(self, path: Path, threads: int | None):
        self.path = Path(path)
        self._session = OpenVinoSession(self.path, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session(batch)[0]


def int8_sha256(xml: Path) -> str:
    """sha256 over the IR's .xml and .bin: what the int8 embedder identity pins."""
    digest = hashlib.sha256()
    for path in (Path(xml), Path(xml).with_suffix(".bin")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def int8_files(xml: Path) -> dict[str, Path]:
    """The IR pair of an int8 model under the names it is saved with beside an index version."""
    return {INT8_XML: Path(xml), INT8_BIN: Path(xml).with_suffix(".bin")}


def quantise(
    onnx_path: Path,
    samples: Sequence[np.ndarray],
    transform: Callable[[np.ndarray], np.ndarray],
    out_xml: Path,
) -> Path:
    """NNCF int8 post-training quantisation of the ONNX graph on `samples` (each `transform`ed to a
    (1, 3, S, S) float32 batch), saved as IR at `out_xml` (+ .bin), each file written atomically.

    NNCF defaults (preset performance, fast bias correction) measured as good as the alternatives on
    GroZi-120 (docs/evaluation.md); weights not quantised stay fp32 (no fp16 compression).
    """
    ov, nncf = _openvino(), _nncf()
    dataset = nncf.Dataset(list(samples), transform)
    # The pooling stays float: GeM's x^3 spans a range 8 bits cannot hold (mean cosine to fp32 0.84 on
    # GroZi-120 references with it quantised, 0.9x without); NNCF would put FakeQuantize on each of its steps.
    pooling = nncf.IgnoredScope(patterns=[POOLING_NODES])
    with signal_stack_kept():  # NNCF compiles the model on Cores of its own
        model = _core().read_model(str(onnx_path))
        quantised = nncf.quantize(model, dataset, subset_size=len(samples), ignored_scope=pooling)
    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_xml.parent, prefix=".int8-") as staging:
        staged = Path(staging) / "model.xml"
        ov.save_model(quantised, str(staged), compress_to_fp16=False)
        # the .bin first: an .xml on disk means its weights are complete
        atomic_write_bytes(out_xml.with_suffix(".bin"), staged.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out_xml, staged.read_bytes())
    return out_xml


def recipe() -> dict[str, str]:
    """What shapes a quantised model besides its graph and data (part of the int8 cache key): the library
    versions and how `quantise` calls them (change the string with the call)."""
    return {
        "openvino": _openvino().get_version(),
        "nncf": _nncf().__version__,
        "quantise": f"nncf.quantize defaults, ignored {POOLING_NODES}, fp32 weights kept",
    }


def _nncf():
    return _import_quietly("nncf")


@functools.cache
def _core():
    """The process's one OpenVINO Core, never released: each Core loads a CPU plugin of its own (seconds),
    and a released one swaps a signal stack back (see `signal_stack_kept`)."""
    return _openvino().Core()


_AT_MINSIGSTKSZ = 51  # getauxval key: the smallest signal frame this CPU's register state needs
_LEGACY_SIGSTKSZ = 8192
_signal_stacks: dict[int, ctypes.Array] = {}  # thread id -> a signal stack this module mapped for it, kept


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Leave the calling thread on a live alternate signal stack after OpenVINO work.

    Each Core's CPU plugin installs a signal stack of its own for the creating thread (AMX register state
    needs large signal frames) and, when released, reinstates the stack it found and unmaps its own (openvino
    2026.4 `SigAltStackSetup`). Plugins released out of creation order, as NNCF's Cores during a quantisation,
    leave the thread on unmapped memory, and the next signal handled there (Python handlers run on that stack:
    torch's SIGCHLD handler for DataLoader workers, say) kills the process with SIGSEGV. On exit the stack
    found on entry is reinstated if it is large enough, otherwise one this module maps for the thread."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    entry = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(entry))
    try:
        yield
    finally:
        libc.getauxval.restype = ctypes.c_ulong
        needed = int(libc.getauxval(_AT_MINSIGSTKSZ)) + _LEGACY_SIGSTKSZ
        usable = not entry.ss_flags & 2 and entry.ss_size >= needed  # 2 = SS_DISABLE
        if not usable:
            buffer = _signal_stacks.setdefault(threading.get_ident(), ctypes.create_string_buffer(needed))
            entry = _SignalStack(ctypes.cast(buffer, ctypes.c_void_p), 0, ctypes.sizeof(buffer))
        if libc.sigaltstack(ctypes.byref(entry), None) != 0:
            raise OSError(ctypes.get_errno(), "sigaltstack failed after OpenVINO work")


def _openvino():
    return _import_quietly("openvino")


def _import_quietly(name: str):
    """`import name` (openvino or nncf) with Intel's usage telemetry off, and with oneTBB loading its
    hwloc binding like any other library.

    Telemetry: importing openvino sends an "import" event to Google Analytics, and NNCF one per call, each
    from a process forked by a thread, unless the user opted out (`opt_in_out --opt_out`); both also write a
    client id under ~/intel. This project never touches the network at run time. `openvino_telemetry`
    declines consent in CI (`CI=true` when its one Telemetry instance is set up, at the first of these
    imports), the one switch that stops it all, so the first import runs with it set, then it is restored.

    Allocator: oneTBB dlopens libtbbbind with RTLD_DEEPBIND, so its hwloc calls glibc's `free` on memory
    that libc handed out through the preloaded allocator: under `score.tcmalloc` OpenVINO scoring aborted
    with "double free or corruption" / "munmap_chunk(): invalid pointer" (oneTBB issue 1636).
    `TBB_ENABLE_SANITIZERS=1` is oneTBB's switch that drops RTLD_DEEPBIND; it is read when TBB first
    loads the binding, after this import, and changes nothing else."""
    import importlib
    import sys

    os.environ.setdefault("TBB_ENABLE_SANITIZERS", "1")
    if name not in sys.modules:
        previous = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            importlib.import_module(name)
        finally:
            if previous is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = previous
    return sys.modules[name]
