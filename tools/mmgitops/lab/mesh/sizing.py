"""The cache sizes ModelMesh derives at startup from what its runtime reports, and the startup limits.

All of it follows ModelMesh.initialize() and ModelMesh.setupMemory() (kserve/modelmesh
ModelMesh.java): sizes are in 8 KiB units (ModelLoader.UNIT_SIZE, ModelLoader.toUnits rounds up),
an instance whose runtime needs explicit unloads (the MLServer adapter does) keeps part of its cache
as an unload buffer that the published capacity leaves out, and an instance is "full" once its free
space falls below minSpaceUnits.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmgitops.modelmesh.defaults import UNIT_BYTES

Mi = 2**20
Gi = 2**30
# ModelMesh's runtime adapter advertises this default model size (DEFAULT_MODELSIZE).
DEFAULT_MODEL_SIZE_BYTES = 1_000_000


def local_default_model_size(capacity_bytes: int) -> int:
    """The default model size (the adapter's DEFAULT_MODELSIZE) a local mesh of either engine gives its pods:
    the adapter's own 1,000,000 bytes, unless the capacity is below ten of them, which ModelMesh refuses
    (setupMemory); then a tenth of the capacity in whole units, at least one. So a pod of ten units holds nine
    one-unit sample models, as a real pod with DEFAULT_MODELSIZE set so would."""
    return max(UNIT_BYTES, min(DEFAULT_MODEL_SIZE_BYTES, capacity_bytes // 10 // UNIT_BYTES * UNIT_BYTES))


def to_units(size_bytes: int) -> int:
    """ModelLoader.toUnits: whole 8 KiB units, rounded up (0 stays 0)."""
    units, rest = divmod(size_bytes, UNIT_BYTES)
    return units + (1 if rest else 0)


class StartupError(Exception):
    """ModelMesh refuses to start: the message is the one its initialize() throws."""


def _mb(size_bytes: int) -> str:
    # ModelMesh.mb(): rounded to whole MiB
    return f"{(size_bytes + Mi // 2) // Mi}MiB"


def _gb(size_bytes: int) -> str:
    # ModelMesh.gb(): String.format("%.3fGiB", ...)
    return f"{size_bytes / Gi:.3f}GiB"


def min_capacity_bytes(default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES) -> int:
    """setupMemory(): at least 10 default-size models or 512 MiB, whichever is smaller, and never below 2."""
    default = to_units(default_model_size_bytes) * UNIT_BYTES
    return max(2 * default, min(512 * Mi, 10 * default))


def check_startup(capacity_bytes: int, max_loading_concurrency: int, load_timeout_ms: int,
                  default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES) -> None:
    """The checks ModelMesh.initialize() and setupMemory() make on the runtime's figures, in their order."""
    if max_loading_concurrency < 1:
        raise StartupError("Model loading concurrency must be >= 1")
    if to_units(default_model_size_bytes) < 1:
        raise StartupError("Default model size must be >= 1 unit")
    if load_timeout_ms < 100:
        raise StartupError("Loading timeout must be >= 100 ms")
    default = to_units(default_model_size_bytes) * UNIT_BYTES
    if capacity_bytes < min_capacity_bytes(default_model_size_bytes):
        raise StartupError(f"Reported model capacity {_gb(capacity_bytes)} too small relative to advertised "
                           f"default model size of {_mb(default)}")


@dataclass(frozen=True)
class CacheSizes:
    capacity_units: int  # the whole cache (capacity bytes / UNIT_BYTES, rounded down)
    unload_buffer_units: int  # reserved for unloads in progress; 0 when the runtime needs no unloads
    min_space_units: int  # an instance with less free space than this is "full"
    default_model_units: int

    @property
    def effective_units(self) -> int:
        """What models may fill, and what the instance publishes as its capacity."""
        return self.capacity_units - self.unload_buffer_units


def cache_sizes(capacity_bytes: int, loading_threads: int, default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES,
                requires_unload: bool = True) -> CacheSizes:
    """ModelMesh.initialize(): the unload buffer (loader.requiresUnload()) and the full threshold."""
    capacity = capacity_bytes // UNIT_BYTES
    default = to_units(default_model_size_bytes)
    buffer = 0
    if requires_unload:
        wanted = loading_threads * default // (2 if loading_threads <= 2 else 4)
        buffer = max(min(wanted, capacity // 10), capacity // 100)
    least = default * (1 if requires_unload or loading_threads <= 1 else 2)
    target = min(default * loading_threads, capacity // 20)
    return CacheSizes(capacity, buffer, max(least, target), default)
