"""OpenVINO runtimes of the embedder: fp32 gives the PyTorch vectors; int8 is calibrated on references, gated,
cached by its calibration set, another identity, and saved with (and refused against) the index it builds."""

from __future__ import annotations

import ctypes.util
import logging
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from brandsentry.config import load_config
from brandsentry.embed import Embedder, EmbedderSettings, create_full_model
from brandsentry.embed_int8 import CalibrationError, Gate, Int8GateError, calibrated_embedder
from brandsentry.embed_openvino import INT8_BIN, INT8_XML, int8_sha256
from brandsentry.embed_runtime import resolve_runtime
from brandsentry.errors import ConfigError
from brandsentry.images import DecodeLimits
from brandsentry.index import EmbedderMismatchError, ReferenceIndex, current_version_dir, latest_manifest
from brandsentry.index_sync import embedder_for_index, update_from_catalog
from brandsentry.settings import default_settings
from conftest import copy_workspace

LIMITS = default_settings(DecodeLimits, "images")


def photo(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    return np.clip(smooth + rng.integers(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny test network with BatchNorm statistics re-estimated on noise: a random init shrinks its
    activations to ~1e-3, which 8 bits round to zero; with real statistics they keep their scale."""
    model, _ = create_full_model("test_efficientnet.r160_in1k", "random")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for seed in range(4):
            model(torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(seed)))
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(model.eval().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    paths = []
    for seed in range(25):
        paths.append(root / f"{seed:02d}.jpg")
        Image.fromarray(photo(120 + seed, 90, seed)).save(paths[-1], quality=92)
    return paths


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def settings(weights, cache, *overrides: str) -> EmbedderSettings:
    cfg = load_config(
        [
            "embedder=tiny_random",
            f"embedder.weights={weights}",
            f"embedder.onnx_cache={cache}",
            "embedder.runtime=openvino",
            "embedder.precision=int8",
            "embedder.int8.calibration_images=40",
            "embedder.int8.probe_images=32",
            "embedder.int8.min_cosine=0.5",
            "embedder.int8.max_recall_drop=0.25",
            *overrides,
        ]
    ).embedder
    return EmbedderSettings.from_config(cfg)


@pytest.fixture(scope="module")
def int8(tiny_weights, photos, cache):
    return calibrated_embedder(settings(tiny_weights, cache), photos, LIMITS)


@pytest.fixture(scope="module")
def fp32(tiny_weights, cache):
    return Embedder.from_config(replace(settings(tiny_weights, cache), precision="fp32"))


def test_openvino_gives_the_torch_vectors_under_the_same_identity(tmp_path, photo_array):
    def tiny(runtime: str) -> Embedder:
        cfg = load_config(
            ["embedder=tiny_random", f"embedder.runtime={runtime}", f"embedder.onnx_cache={tmp_path}"]
        )
        return Embedder.from_config(cfg.embedder)

    torch_embedder, openvino, auto = tiny("torch"), tiny("openvino"), tiny("auto")
    assert openvino.runtime == auto.runtime == "openvino" and torch_embedder.runtime == "torch"
    assert openvino.identity == torch_embedder.identity and openvino.model_files == {}
    images = [photo_array(100 + 10 * s, 90, seed=s) for s in range(5)]
    vectors = openvino.embed_arrays(images)
    np.testing.assert_allclose(vectors, torch_embedder.embed_arrays(images), atol=1e-4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[:2], openvino.embed_arrays(images[:2]))


def test_int8_runs_on_openvino_on_the_cpu_only_and_needs_its_model():
    with pytest.raises(ConfigError, match="int8 runs on OpenVINO on the CPU only"):
        resolve_runtime("onnx", torch.device("cpu"), "int8")
    with pytest.raises(ConfigError, match="int8 runs on OpenVINO on the CPU only"):
        resolve_runtime("auto", torch.device("cuda"), "int8")
    assert resolve_runtime("auto", torch.device("cpu"), "int8") == "openvino"
    cfg = load_config(["embedder=tiny_random", "embedder.precision=int8"]).embedder
    with pytest.raises(ConfigError, match="precision=int8 with no int8 model.*index build"):
        Embedder.from_config(cfg)
    with pytest.raises(ConfigError, match="unknown embedder.precision 'int4'"):
        Embedder.from_config({**cfg, "precision": "int4"})


def test_int8_is_another_identity_pinned_by_its_model_files(int8, fp32, photos):
    identity = int8.identity
    assert identity.precision == "int8" and int8.runtime == "openvino"
    assert set(int8.model_files) == {INT8_XML, INT8_BIN}
    assert identity.int8_sha256 == int8_sha256(int8.model_files[INT8_XML])
    assert identity != fp32.identity and identity.key() != fp32.identity.key()
    assert replace(identity, precision="fp32", int8_sha256=None) == fp32.identity
    assert type(identity).from_dict(identity.to_dict()) == identity
    assert "precision" not in fp32.identity.to_dict()  # fp32 indexes saved before int8 keep their identity
    images = [np.asarray(Image.open(p)) for p in photos[:6]]
    vectors = int8.embed_arrays(images)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * fp32.embed_arrays(images), axis=1)
    assert 0.5 < cosine.mean() < 0.99999  # close to fp32, but not fp32


def test_calibration_fills_up_few_references_and_is_cached_by_content(
    int8, tiny_weights, photos, cache, caplog
):
    xml = int8.model_files[INT8_XML]
    stamp = xml.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="brandsentry.embed_int8"):
        again = calibrated_embedder(settings(tiny_weights, cache), list(reversed(photos)), LIMITS)
    assert "25 reference photo(s) + 15 augmented views" in caplog.text
    assert again.identity == int8.identity and xml.stat().st_mtime_ns == stamp  # same photos: same model
    other = calibrated_embedder(settings(tiny_weights, cache), [*photos[1:], photos[0]], LIMITS)
    assert other.identity == int8.identity  # order does not matter, content does
    changed = photos[0].with_name("changed.jpg")
    Image.fromarray(photo(140, 100, seed=99)).save(changed)
    recalibrated = calibrated_embedder(settings(tiny_weights, cache), [changed, *photos[1:]], LIMITS)
    assert recalibrated.model_files[INT8_XML] != xml and recalibrated.identity != int8.identity
    assert len(list(cache.glob("*-int8-*.xml"))) == 2


def test_too_few_references_are_refused_with_their_count(tiny_weights, photos, cache):
    with pytest.raises(CalibrationError, match=r"19 distinct reference photo\(s\).*min_references=20.*fp32"):
        calibrated_embedder(settings(tiny_weights, cache), photos[:19] + photos[:5], LIMITS)


def test_the_accuracy_gate_refuses_a_model_too_far_from_fp32(int8, fp32, tiny_weights, photos, cache):
    strict = settings(tiny_weights, cache, "embedder.int8.min_cosine=1.0")
    with pytest.raises(
        Int8GateError, match=r"accuracy gate \(self-retrieval R@1 .* on 32 augmented .*cosine"
    ):
        calibrated_embedder(strict, photos, LIMITS)
    worse = settings(tiny_weights, cache, "embedder.int8.max_recall_drop=0", "embedder.int8.min_cosine=-1")
    gate = Gate.measure(fp32, int8, [np.asarray(Image.open(p).convert("RGB")) for p in photos], worse.int8)
    assert gate.passes(worse.int8) == (gate.recall_int8 >= gate.recall_fp32)
    assert 0 < gate.recall_fp32 <= 1 and 0 < gate.recall_int8 <= 1 and gate.probes == 32


# ---- the workspace: an int8 index carries its model; fp32 and int8 refuse each other's index ------------------


def test_an_int8_index_build_saves_its_model_and_refuses_fp32(tiny_workspace, tmp_path, tiny_weights, cache):
    workspace = copy_workspace(tiny_workspace, tmp_path / "workspace")
    fp32_root = tiny_workspace.path / "index"
    int8_overrides = [
        *workspace.overrides,
        f"embedder.weights={tiny_weights}",
        f"embedder.onnx_cache={cache}",
        "embedder.precision=int8",
        "embedder.runtime=openvino",
        "embedder.int8.min_cosine=0.5",
        "embedder.int8.max_recall_drop=0.25",
        "embedder.int8.calibration_images=40",
    ]
    cfg = load_config(int8_overrides)
    with pytest.raises(EmbedderMismatchError, match="not an int8 one.*precision=int8"):
        embedder_for_index(cfg.embedder, fp32_root)  # the fp32 index of the tiny workspace
    report = update_from_catalog(cfg, rebuild=True)
    root = workspace.path / "index"
    version = current_version_dir(root)
    assert {p.name for p in version.iterdir()} >= {INT8_XML, INT8_BIN, "index.faiss", "manifest.json"}
    identity = latest_manifest(root).embedder
    assert identity["precision"] == "int8" and report.count == latest_manifest(fp32_root).count
    embedder = embedder_for_index(cfg.embedder, root)
    assert embedder.identity.to_dict() == identity
    ReferenceIndex.load(root, embedder.identity.to_dict())
    fp32 = Embedder.from_config(load_config([*int8_overrides, "embedder.precision=fp32"]).embedder)
    with pytest.raises(EmbedderMismatchError, match="was built with embedder"):
        ReferenceIndex.load(root, fp32.identity.to_dict())
    # an update keeps the index's model (the same identity) and carries its files into the new version
    again = update_from_catalog(cfg)
    assert again.version == report.version + 1 and latest_manifest(root).embedder == identity
    assert (current_version_dir(root) / INT8_BIN).read_bytes() == (version / INT8_BIN).read_bytes()


OPENVINO_THEN_SIGNALS = textwrap.dedent(
    """
    import gc, signal, subprocess, sys
    from pathlib import Path
    import numpy as np
    from brandsentry.config import load_config
    from brandsentry.embed import Embedder
    from brandsentry.embed_openvino import quantise

    cache = Path(sys.argv[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # as torch's DataLoader does for its workers

    def openvino():
        overrides = ["embedder=tiny_random", "embedder.runtime=openvino", f"embedder.onnx_cache={cache}"]
        return Embedder.from_config(load_config(overrides).embedder)

    first, second = openvino(), openvino()
    image = np.full((64, 64, 3), 127, np.uint8)
    first.embed_arrays([image]), second.embed_arrays([image])
    del first
    gc.collect()  # released before the one made after it
    onnx = next(cache.rglob("*.onnx"))
    quantise(onnx, [image] * 4, lambda rgb: second.preprocess(rgb).numpy()[None], cache / "int8" / "m.xml")
    del second
    gc.collect()
    for _ in range(3):  # each child's exit is a SIGCHLD handled on the thread's signal stack
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    print("alive")
    """
)


def test_signals_are_handled_after_openvino_models_are_made_and_released_out_of_order(tmp_path):
    """OpenVINO's CPU plugin swaps signal stacks per Core; released out of order they left the thread on
    unmapped memory and the pytest process died of SIGSEGV at the next SIGCHLD (a subprocess here, so a
    regression fails this test instead of killing the run)."""
    script = tmp_path / "openvino_then_signals.py"
    script.write_text(OPENVINO_THEN_SIGNALS)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout.strip().splitlines()[-1:]) == (0, ["alive"]), done.stderr[-2000:]


OPENVINO_EMBEDS = textwrap.dedent(
    """
    import sys
    import numpy as np
    from brandsentry.config import load_config
    from brandsentry.embed import Embedder

    overrides = ["embedder=tiny_random", "embedder.runtime=openvino", f"embedder.onnx_cache={sys.argv[1]}"]
    embedder = Embedder.from_config(load_config(overrides).embedder)
    print(embedder.embed_arrays([np.full((64 + i, 64, 3), 127, np.uint8) for i in range(8)]).shape)
    print("alive")
    """
)


@pytest.mark.skipif(
    ctypes.util.find_library("tcmalloc_minimal") is None,
    reason="libtcmalloc-minimal4 is not installed (.ci/run installs it)",
)
def test_openvino_embeds_under_the_tcmalloc_that_score_preloads(tmp_path):
    """oneTBB's RTLD_DEEPBIND binding made hwloc free tcmalloc's memory with glibc's free: the process
    aborted ("munmap_chunk(): invalid pointer") in its first compile, whenever `score` had preloaded tcmalloc."""
    script = tmp_path / "openvino_embeds.py"
    script.write_text(OPENVINO_EMBEDS)
    environment = {**os.environ, "LD_PRELOAD": ctypes.util.find_library("tcmalloc_minimal")}
    environment.pop("TBB_ENABLE_SANITIZERS", None)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert (done.returncode, done.stdout.split()[-1:]) == (0, ["alive"]), done.stderr[-2000:]
