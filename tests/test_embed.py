"""The embedder: real weights load strictly and recognise things; vectors are unit-norm, ordered, reproducible."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from PIL import Image
from skimage.data import coffee

from brandsentry.config import load_config
from brandsentry.embed import (
    Embedder,
    EmbedderIdentity,
    EmbedderSettings,
    Embeddings,
    Preprocessing,
    WeightsError,
    create_backbone,
    create_full_model,
    preprocessing_for,
    resolve_weights_file,
)
from brandsentry.errors import ConfigError
from brandsentry.files import file_sha256
from brandsentry.image_batches import ImageBatches
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.settings import default_settings

ESPRESSO = 967
LIMITS = default_settings(DecodeLimits, "images")
LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


def embedder_config(name: str, *overrides: str):
    return load_config([f"embedder={name}", *overrides]).embedder


@pytest.fixture(scope="module")
def tiny():
    return Embedder.from_config(embedder_config("tiny_random"))


@pytest.fixture(scope="module")
def lite0():
    return Embedder.from_config(embedder_config("lite0", "embedder.num_workers=0"))


@pytest.mark.slow
@pytest.mark.parametrize("arch", LITES)
def test_real_weights_load_strictly_and_recognise_an_espresso(arch):
    weights = "pypi:" + arch.removeprefix("tf_")
    weights = weights.replace("efficientnet_", "efficientnet-")
    model, sha256 = create_full_model(arch, weights)
    path = resolve_weights_file(weights)
    assert sha256 == file_sha256(path)
    assert path.stem.split("-")[-1] == sha256[:8]  # the file names its own hash prefix
    assert model.num_classes == 1000
    with torch.inference_mode():
        logits = model(preprocessing_for(model)(coffee())[None])
    assert ESPRESSO in logits.topk(5).indices[0].tolist()


def test_preprocessing_is_timms_eval_transform(photo_array):
    for arch, input_size in (
        ("tf_efficientnet_lite0", None),
        ("tf_efficientnet_lite2", None),
        ("resnet18", 96),
    ):
        model = timm.create_model(arch, pretrained=False, num_classes=0)
        ours = preprocessing_for(model, input_size)
        data = timm.data.resolve_model_data_config(model)
        if input_size:
            data["input_size"] = (3, input_size, input_size)
        theirs = timm.data.create_transform(**data)
        for width, height in ((640, 480), (300, 701), (257, 256), (40, 30)):
            rgb = photo_array(width, height)
            expected = theirs(Image.fromarray(rgb))
            got = ours(rgb)
            assert got.shape == expected.shape == (3, ours.input_size, ours.input_size)
            assert got.dtype == torch.float32
            # resampling only the crop box may round a rare pixel the other way: at most one uint8 step
            step = 1 / 255 / min(ours.std) + 1e-5
            differs = (got - expected).abs()
            assert differs.max() <= step and (differs > 1e-5).float().mean() < 0.01, (arch, width, height)


def test_preprocessing_refuses_non_rgb_arrays(lite0):
    with pytest.raises(ValueError, match="uint8"):
        lite0.preprocess(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        lite0.preprocess(np.zeros((10, 10, 3), dtype=np.float32))


def test_lite0_embeddings_are_unit_float32_and_reproducible(lite0, photo_array):
    images = [coffee(), photo_array(320, 240, seed=1), photo_array(240, 320, seed=2)]
    vectors = lite0.embed_arrays(images)
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, lite0.embed_arrays(images))
    again = Embedder.from_config(embedder_config("lite0", "embedder.num_workers=0"))
    assert np.allclose(vectors, again.embed_arrays(images), atol=1e-6)
    assert lite0.dim == lite0.identity.dim == 1280
    assert lite0.device == torch.device("cpu")
    assert lite0.embed_arrays([]).shape == (0, 1280)


def test_lite0_identity_records_the_timm_preprocessing(lite0):
    identity = lite0.identity
    assert identity.arch == "tf_efficientnet_lite0"
    assert (identity.input_size, identity.crop_pct, identity.interpolation) == (224, 0.875, "bicubic")
    assert identity.mean == identity.std == (0.5, 0.5, 0.5)
    assert len(identity.weights_sha256) == 64


@pytest.mark.slow
@pytest.mark.parametrize("config,input_size", [("lite1", 240), ("lite2", 260)])
def test_lite_configs_use_their_native_resolution(config, input_size):
    embedder = Embedder.from_config(embedder_config(config))
    assert embedder.identity.input_size == input_size
    assert embedder.embed_arrays([coffee()]).shape == (1, 1280)


def test_identity_round_trips_and_its_key_tells_embedders_apart(lite0, tiny):
    for identity in (lite0.identity, tiny.identity):
        data = json.loads(json.dumps(identity.to_dict()))
        assert EmbedderIdentity.from_dict(data) == identity
        assert EmbedderIdentity.from_dict(data).key() == identity.key()
    assert lite0.identity.key() != tiny.identity.key()
    reseeded = Embedder.from_config(embedder_config("tiny_random", "embedder.seed=1"))
    assert reseeded.identity.weights_sha256 == "random:1" and tiny.identity.weights_sha256 == "random:0"
    assert reseeded.identity.key() != tiny.identity.key()
    assert len(tiny.identity.key()) == 16


def test_identity_from_dict_names_missing_and_unexpected_fields(tiny):
    data = tiny.identity.to_dict()
    del data["dim"]
    data["colour"] = "blue"
    with pytest.raises(ValueError, match=r"missing \['dim'\], unexpected \['colour'\]"):
        EmbedderIdentity.from_dict(data)


def test_random_tiny_backbone_is_seeded_and_leaves_the_global_rng_alone(tiny, photo_array):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    model_a, tag_a = create_backbone("test_efficientnet.r160_in1k", "random", seed=0)
    assert torch.equal(torch.rand(1), expected_next)
    model_b, _ = create_backbone("test_efficientnet.r160_in1k", "random", seed=0)
    model_c, _ = create_backbone("test_efficientnet.r160_in1k", "random", seed=1)
    assert tag_a == "random:0"
    state_a, state_b, state_c = model_a.state_dict(), model_b.state_dict(), model_c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)
    vectors = tiny.embed_arrays([photo_array(100, 80)])
    assert vectors.shape == (1, tiny.dim) and tiny.identity.input_size == 64
    plain = Embedder.from_config(OmegaConf.to_container(embedder_config("tiny_random")))
    assert plain.identity == tiny.identity
    assert np.array_equal(plain.embed_arrays([photo_array(100, 80)]), vectors)


def test_a_state_dict_path_loads_any_timm_arch(tmp_path, tiny, photo_array):
    model, _ = create_full_model("test_efficientnet.r160_in1k", "random", seed=0)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    from_file = Embedder.from_config(embedder_config("tiny_random", f"embedder.weights={path}"))
    assert from_file.identity.weights_sha256 == file_sha256(path)
    assert from_file.identity.key() != tiny.identity.key()
    images = [photo_array(90, 70, seed=s) for s in range(3)]
    assert np.allclose(from_file.embed_arrays(images), tiny.embed_arrays(images), atol=1e-6)
    headless = tmp_path / "headless.pth"
    torch.save(
        {"state_dict": create_backbone("test_efficientnet.r160_in1k", "random")[0].state_dict()}, headless
    )
    backbone, _ = create_backbone("test_efficientnet.r160_in1k", str(headless))
    assert backbone.num_classes == 0


def test_missing_weights_are_an_error_not_a_random_init(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsError, match="efficientnet-lite9-pytorch-model is not installed"):
        create_backbone("tf_efficientnet_lite0", "pypi:efficientnet-lite9")


def test_incompatible_or_unreadable_weights_are_refused(tmp_path):
    tiny_state = tmp_path / "tiny.pth"
    torch.save(create_full_model("test_efficientnet.r160_in1k", "random")[0].state_dict(), tiny_state)
    with pytest.raises(WeightsError, match="does not fit 'tf_efficientnet_lite0'"):
        create_backbone("tf_efficientnet_lite0", str(tiny_state))
    with pytest.raises(WeightsError, match="does not fit 'tf_efficientnet_lite1'"):
        create_backbone("tf_efficientnet_lite1", "pypi:efficientnet-lite0")  # same key layout, other shapes
    with pytest.raises(WeightsError, match="has no place"):
        create_backbone("tf_efficientnet_lite0", "pypi:efficientnet-lite2")  # more blocks than lite0 has
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        create_backbone("tf_efficientnet_lite0", str(garbage))
    not_tensors = tmp_path / "dict.pth"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(WeightsError, match="state dict of tensors"):
        create_backbone("tf_efficientnet_lite0", str(not_tensors))


def test_unknown_arch_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backbone 'efficientnet_b99'"):
        create_backbone("efficientnet_b99", "random")


def test_embedder_settings_are_strict_and_checked_before_any_model_is_built():
    plain = OmegaConf.to_container(embedder_config("tiny_random"))
    with pytest.raises(ConfigError, match=r"embedder.batchsize \(did you mean embedder.batch_size\?\)"):
        Embedder.from_config({**plain, "batchsize": 8})
    with pytest.raises(ConfigError, match=r"embedder.view not set"):
        Embedder.from_config({key: value for key, value in plain.items() if key != "view"})
    with pytest.raises(ConfigError, match="embedder.batch_size must be >= 1"):
        Embedder.from_config(embedder_config("tiny_random", "embedder.batch_size=0"))
    with pytest.raises(ConfigError, match="embedder.amp must be bool"):
        Embedder.from_config({**plain, "amp": "yes"})
    settings = EmbedderSettings.from_config(embedder_config("tiny_random"))
    assert Embedder.from_config(settings).identity == Embedder.from_config(plain).identity


def test_bad_device_settings_are_config_errors():
    with pytest.raises(ConfigError, match="'gpu'"):
        Embedder.from_config(embedder_config("tiny_random", "embedder.device=gpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            Embedder.from_config(embedder_config("tiny_random", "embedder.device=cuda"))


@pytest.mark.parametrize("workers", [0, 2])
def test_embed_files_reports_bad_files_and_keeps_good_ones_in_order(
    tmp_path, image_file, photo_array, tiny, workers
):
    good = [image_file(f"good{i}.jpg", photo_array(160 + 20 * i, 120, seed=i), quality=90) for i in range(5)]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:400])
    paths = [good[0], truncated, good[1], good[2], tmp_path / "missing.png", good[3], good[4]]
    ids = ["a", "bad", "b", "c", "gone", "d", "e"]
    embedder = Embedder(
        tiny.model, "test_efficientnet.r160_in1k", "random:0", tiny.preprocessing, tiny.device,
        batch_size=3, amp=False, channels_last=False, num_workers=workers,
    )  # fmt: skip
    embeddings, failures = embedder.embed_files(paths, ids=ids)
    assert isinstance(embeddings, Embeddings)
    assert embeddings.ids.tolist() == ["a", "b", "c", "d", "e"]
    assert [(id_, error.reason) for id_, error in failures] == [
        ("bad", "truncated"),
        ("gone", "missing_file"),
    ]
    assert all(isinstance(error, ImageDecodeError) and error.path in map(str, paths) for _, error in failures)
    limits = default_settings(DecodeLimits, "images")  # what embed_files decodes with by default
    decoded = [decode_image(path, limits, target_size=tiny.preprocessing.resize_size) for path in good]
    assert np.allclose(embeddings.vectors, tiny.embed_arrays(decoded), atol=1e-5)
    default_ids, _ = embedder.embed_files(paths)
    assert default_ids.ids.tolist() == [0, 2, 3, 5, 6]


def test_batches_carry_indices_tensor_and_errors(tmp_path, image_file, photo_array, tiny):
    ok = image_file("ok.png", photo_array(50, 40))
    batches = ImageBatches([ok, tmp_path / "no.png", ok, None], [(0, 3), (3, 4)], tiny.preprocessing, LIMITS)
    assert pickle.loads(pickle.dumps(batches)).paths == batches.paths  # cheap to send to decode workers
    batch = batches[0]
    assert (batch.start, batch.stop, batch.indices.tolist()) == (0, 3, [0, 2])
    assert batch.tensor.shape == (2, 3, 64, 64) and batch.pixels is None
    assert [(i, e.reason) for i, e in batch.errors] == [(1, "missing_file")]
    skipped = batches[1]  # a None path: nothing to decode, no error either
    assert skipped.indices.tolist() == [] and skipped.errors == [] and skipped.tensor.numel() == 0
    assert [b.indices.tolist() for b in ImageBatches.consecutive([ok] * 5, 2, tiny.preprocessing, LIMITS)] == [
        [0, 1], [2, 3], [4]
    ]  # fmt: skip


def test_batches_keep_full_size_pixels_and_report_preprocessing_failures(image_file, photo_array, tiny):
    wide, tall = image_file("wide.png", photo_array(300, 200)), image_file("tall.png", photo_array(90, 120))
    batch = ImageBatches([wide, tall], [(0, 2)], tiny.preprocessing, LIMITS, keep_pixels=True)[0]
    assert [image.shape for image in batch.images()] == [(200, 300, 3), (120, 90, 3)]
    np.testing.assert_array_equal(batch.images()[1], decode_image(tall, LIMITS))

    class RefuseTall:
        resize_size = tiny.preprocessing.resize_size

        def __call__(self, rgb):
            if rgb.shape[0] > rgb.shape[1]:
                raise ValueError("too tall")
            return tiny.preprocessing(rgb)

    batch = ImageBatches([wide, tall], [(0, 2)], RefuseTall(), LIMITS)[0]
    assert batch.indices.tolist() == [0]
    [(index, error)] = batch.errors
    assert (index, error.reason, error.detail) == (1, "preprocess_failed", "ValueError: too tall")


def test_preprocessing_refuses_unknown_interpolation():
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        Preprocessing(224, 0.875, (0.5,) * 3, (0.5,) * 3, "cubic")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_amp_embeddings_agree_with_cpu_fp32(lite0, photo_array):
    images = [coffee(), photo_array(320, 240, seed=1)]
    cuda = Embedder.from_config(embedder_config("lite0", "embedder.device=cuda", "embedder.amp=true"))
    assert cuda.device.type == "cuda" and cuda.amp
    assert cuda.identity == lite0.identity
    cosine = np.sum(cuda.embed_arrays(images) * lite0.embed_arrays(images), axis=1)
    assert np.all(cosine > 0.999)


# ---- runtimes: the same vectors from PyTorch and ONNX Runtime ------------------------------------------------


def test_onnx_runtime_gives_the_torch_vectors_and_reuses_its_export(tmp_path, tiny, photo_array):
    cache = tmp_path / "onnx"
    onnx = Embedder.from_config(
        embedder_config("tiny_random", "embedder.runtime=onnx", f"embedder.onnx_cache={cache}")
    )
    assert tiny.runtime == "torch" and onnx.runtime == "onnx"
    assert onnx.identity == tiny.identity  # same model, same vectors: an index of either serves both
    images = [photo_array(120 + 10 * s, 90, seed=s) for s in range(5)]
    vectors = onnx.embed_arrays(images)
    assert vectors.dtype == np.float32 and vectors.shape == (5, tiny.dim)
    np.testing.assert_allclose(vectors, tiny.embed_arrays(images), atol=1e-4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[:2], onnx.embed_arrays(images[:2]))  # deterministic per batch
    (exported,) = cache.glob("*.onnx")
    stamp = exported.stat().st_mtime_ns
    again = Embedder.from_config(
        embedder_config("tiny_random", "embedder.runtime=onnx", f"embedder.onnx_cache={cache}")
    )
    assert exported.stat().st_mtime_ns == stamp and list(cache.glob("*.onnx")) == [exported]
    assert np.array_equal(again.embed_arrays(images), vectors)
    # another model (other seed) is another file, never the cached one
    Embedder.from_config(
        embedder_config(
            "tiny_random", "embedder.runtime=onnx", f"embedder.onnx_cache={cache}", "embedder.seed=1"
        )
    )
    assert len(list(cache.glob("*.onnx"))) == 2


def test_a_broken_onnx_export_fails_onnx_and_falls_back_to_torch_under_auto(tmp_path, tiny, photo_array):
    cache = tmp_path / "onnx"
    Embedder.from_config(
        embedder_config("tiny_random", "embedder.runtime=onnx", f"embedder.onnx_cache={cache}")
    )
    (exported,) = cache.glob("*.onnx")
    exported.write_bytes(b"not an onnx model")
    with pytest.raises(Exception, match="(?i)protobuf|onnx|load"):
        Embedder.from_config(
            embedder_config("tiny_random", "embedder.runtime=onnx", f"embedder.onnx_cache={cache}")
        )
    auto = Embedder.from_config(
        embedder_config("tiny_random", "embedder.runtime=auto", f"embedder.onnx_cache={cache}")
    )
    assert auto.runtime == "torch" and auto.identity == tiny.identity
    images = [photo_array(100, 80)]
    assert np.array_equal(auto.embed_arrays(images), tiny.embed_arrays(images))


def test_runtime_settings_are_checked():
    from brandsentry.embed_runtime import resolve_runtime

    with pytest.raises(ConfigError, match="unknown embedder.runtime 'tensorrt'"):
        Embedder.from_config(embedder_config("tiny_random", "embedder.runtime=tensorrt"))
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_runtime("onnx", torch.device("cuda"))
    assert resolve_runtime("auto", torch.device("cuda")) == "torch"
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino"  # the fastest one installed
    assert resolve_runtime("torch", torch.device("cpu")) == "torch"


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_lite0_runtimes_match_the_default_openvino(lite0, photo_array, runtime):
    """The default (runtime=auto on CPU) is OpenVINO; PyTorch and ONNX Runtime give the same Lite0 vectors
    to 1e-4."""
    assert lite0.runtime == "openvino"
    other = Embedder.from_config(
        embedder_config("lite0", "embedder.num_workers=0", f"embedder.runtime={runtime}")
    )
    assert other.identity == lite0.identity and other.runtime == runtime
    images = [coffee(), photo_array(320, 240, seed=1), photo_array(240, 320, seed=2)]
    np.testing.assert_allclose(lite0.embed_arrays(images), other.embed_arrays(images), atol=1e-4)
