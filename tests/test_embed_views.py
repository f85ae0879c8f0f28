"""Embedder options `view` (centre crop | whole image letterboxed) and `pool` (average | GeM).

Both change what a vector means, so both are part of the embedder identity: an index built with other
preprocessing or pooling is refused, while the identity of a centre-crop, average-pool embedder reads
exactly as before the options existed (indexes and bundles saved then stay valid).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from brandsentry.config import load_config
from brandsentry.embed import (
    Embedder,
    EmbedderIdentity,
    GeneralizedMeanPool,
    Preprocessing,
    create_backbone,
    set_pooling,
)
from brandsentry.errors import ConfigError
from brandsentry.index import EmbedderMismatchError, ReferenceIndex

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def tiny(**options) -> Embedder:
    cfg = OmegaConf.to_container(load_config(["embedder=tiny_random"]).embedder)
    return Embedder.from_config({**cfg, **options})


def tall_image() -> np.ndarray:
    """120 x 40 grey with a red band on the top 10 rows: a centre crop cuts it off, a letterbox keeps it."""
    rgb = np.full((120, 40, 3), 128, np.uint8)
    rgb[:10] = (255, 0, 0)
    return rgb


def test_full_view_letterboxes_the_whole_image_onto_the_mean_colour():
    center = Preprocessing(48, 0.875, MEAN, STD, "bicubic")
    full = Preprocessing(48, 0.875, MEAN, STD, "bicubic", view="full")
    red = (1.0 - 0.5) / 0.25  # normalised red channel of the band
    cropped, boxed = center(tall_image()), full(tall_image())
    assert cropped.shape == boxed.shape == (3, 48, 48) and boxed.dtype == torch.float32
    assert cropped[0].max() < red - 0.5  # the band lies outside the centre crop
    # the image becomes 16 x 48 (width x height), centred: columns 16..31; the rest is exactly zero
    assert torch.all(boxed[:, :, :16] == 0) and torch.all(boxed[:, :, 32:] == 0)
    assert torch.allclose(boxed[0, :2, 16:32], torch.full((2, 16), red), atol=0.05)  # the band, on top
    assert torch.allclose(boxed[0, 30:, 16:32], torch.zeros(18, 16), atol=0.05)  # grey 128 ~ the mean
    wide = full(np.ascontiguousarray(tall_image().transpose(1, 0, 2)))
    assert torch.all(wide[:, :16] == 0) and torch.all(wide[:, 32:] == 0)
    with pytest.raises(ValueError, match="unknown embedder view"):
        Preprocessing(48, 0.875, MEAN, STD, "bicubic", view="side")


def test_gem_pooling_spans_average_to_max_and_replaces_the_backbones_pool():
    feature_map = torch.rand(2, 5, 7, 7)  # non-negative, as after the backbone's last activation
    assert torch.allclose(GeneralizedMeanPool(1)(feature_map), feature_map.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(GeneralizedMeanPool(200)(feature_map), feature_map.amax(dim=(2, 3)), rtol=0.03)
    model, _ = create_backbone("test_efficientnet.r160_in1k", "random")
    set_pooling(model, "gem", 4.0)
    assert isinstance(model.global_pool, GeneralizedMeanPool) and model.global_pool.p == 4.0
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, model.num_features)
    with pytest.raises(ConfigError, match="unknown embedder.pool"):
        set_pooling(model, "max")
    with pytest.raises(ConfigError, match="GeM exponent"):
        set_pooling(model, "gem", 0.5)


def test_view_and_pool_change_the_vectors_and_the_identity():
    plain, full, gem = tiny(), tiny(view="full"), tiny(pool="gem")
    both = tiny(view="full", pool="gem", gem_p=3.0)
    image = tall_image()
    vectors = [e.embed_arrays([image])[0] for e in (plain, full, gem, both)]
    for i in range(4):
        assert np.isclose(np.linalg.norm(vectors[i]), 1.0, atol=1e-5)
        for j in range(i):
            assert not np.allclose(vectors[i], vectors[j], atol=1e-3)
    assert (both.identity.view, both.identity.pool, both.identity.gem_p) == ("full", "gem", 3.0)
    assert (gem.identity.pool, gem.identity.gem_p) == ("gem", 3.0)  # the default exponent
    keys = {e.identity.key() for e in (plain, full, gem, both)}
    assert len(keys) == 4
    assert both.identity.preprocessing() == both.preprocessing
    # the default identity reads as before the options existed; every identity round-trips
    old = plain.identity.to_dict()
    assert not {"view", "pool", "gem_p"} & set(old)
    assert both.identity.to_dict()["view"] == "full" and both.identity.to_dict()["gem_p"] == 3.0
    for e in (plain, full, gem, both):
        assert EmbedderIdentity.from_dict(e.identity.to_dict()) == e.identity
    with pytest.raises(ValueError, match="unexpected"):
        EmbedderIdentity.from_dict({**old, "colour": "red"})
    with pytest.raises(ConfigError, match="unknown embedder view"):
        tiny(view="side")


def test_an_index_built_with_other_preprocessing_or_pooling_is_refused(tmp_path):
    plain, both = tiny(), tiny(view="full", pool="gem")
    vectors = plain.embed_arrays([tall_image(), tall_image()[::-1].copy()])
    index = ReferenceIndex.create("Flat", plain.dim, plain.identity.to_dict())
    index.add(np.array([1, 2]), vectors)
    index.save(tmp_path, catalog_high_water=2)
    assert len(ReferenceIndex.load(tmp_path, plain.identity.to_dict())) == 2
    for other in (both, tiny(view="full"), tiny(pool="gem", gem_p=2.0)):
        with pytest.raises(EmbedderMismatchError, match="rebuild the index"):
            ReferenceIndex.load(tmp_path, other.identity.to_dict())


def test_embedder_configs_with_the_options_compose():
    cfg = load_config(["embedder=lite0_full_gem"])
    assert (cfg.embedder.view, cfg.embedder.pool, cfg.embedder.gem_p) == ("full", "gem", 3.0)
    assert cfg.embedder.arch == load_config([]).embedder.arch
