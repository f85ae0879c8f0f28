"""`engine=ray`: the same shards scored by a pool of Ray Data actors give exactly the local engine's rows."""

from __future__ import annotations

import numpy as np
import pytest

from brandsentry.run_folder import EMBEDDINGS_DIR, embedding_files
from brandsentry.scoring import score_run
from conftest import comparable, read_results, score_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_engine_matches_the_local_engine(world, reference, tmp_path):
    pytest.importorskip("ray.data")
    import ray

    out = tmp_path / "ray"
    settings = ("score.engine=ray", "score.shard_size=10", "score.ray.num_cpus=2", "score.ray.actors=2")
    try:
        summary = score_run(score_config(world, out, *settings))
    finally:
        ray.shutdown()
    assert not ray.is_initialized()  # the run stopped the local cluster it started
    assert summary.engine == "ray" and summary.shards == 6 and summary.scored_now == summary.listings
    assert (out / "_SUCCESS").is_file()
    local_out, local_summary, local_results = reference
    assert summary.decisions == local_summary.decisions and summary.errors == local_summary.errors
    assert comparable(read_results(out)).equals(comparable(local_results))
    for part in embedding_files(local_out):
        np.testing.assert_array_equal(np.load(out / EMBEDDINGS_DIR / part.name), np.load(part))
