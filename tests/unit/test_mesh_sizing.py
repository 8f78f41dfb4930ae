"""Cache sizes and startup limits as ModelMesh.initialize() and setupMemory() derive them."""

from __future__ import annotations

import pytest
from mmgitops.lab.mesh.sizing import (
    StartupError,
    cache_sizes,
    check_startup,
    min_capacity_bytes,
    to_units,
)
from mmgitops.modelmesh.defaults import UNIT_BYTES

pytestmark = pytest.mark.unit


def test_units_round_up_as_model_loader_does():
    assert (to_units(0), to_units(1), to_units(UNIT_BYTES), to_units(1_000_000)) == (0, 1, 1, 123)


def test_the_minimum_capacity_is_ten_default_models_or_512_mib_and_at_least_two():
    assert min_capacity_bytes() == 10 * 123 * UNIT_BYTES
    assert min_capacity_bytes(300 * 2**20) == 2 * 300 * 2**20  # 512 MiB is below two 300 MiB models
    assert min_capacity_bytes(60 * 2**20) == 512 * 2**20


def test_startup_refuses_a_small_capacity_with_modelmeshs_message():
    check_startup(min_capacity_bytes(), 1, 100)
    with pytest.raises(StartupError, match=r"^Reported model capacity 0\.009GiB too small relative to advertised "
                                           r"default model size of 1MiB$"):
        check_startup(min_capacity_bytes() - 1, 2, 90_000)


def test_startup_refuses_no_loading_threads_and_a_short_timeout():
    with pytest.raises(StartupError, match=r"^Model loading concurrency must be >= 1$"):
        check_startup(64 * 2**20, 0, 90_000)
    with pytest.raises(StartupError, match=r"^Loading timeout must be >= 100 ms$"):
        check_startup(64 * 2**20, 2, 99)


def test_the_unload_buffer_and_full_threshold_at_64_mib():
    sizes = cache_sizes(64 * 2**20, 2)
    # 2 threads x 123 units / 2, within [1 %, 10 %] of 8192 units
    assert (sizes.capacity_units, sizes.unload_buffer_units, sizes.effective_units) == (8192, 123, 8069)
    # max(123 (one default model, unloads needed), min(2 x 123, 8192 / 20))
    assert sizes.min_space_units == 246


def test_the_unload_buffer_is_bounded_and_absent_without_unloads():
    assert cache_sizes(16 * 2**20, 8).unload_buffer_units == 204  # 8 x 123 / 4 = 246 -> at most 10 % (204)
    assert cache_sizes(2**30, 1).unload_buffer_units == 1310  # 1 x 123 / 2 = 61 -> at least 1 % (1310)
    sizes = cache_sizes(64 * 2**20, 2, requires_unload=False)
    assert sizes.unload_buffer_units == 0 and sizes.min_space_units == 246
