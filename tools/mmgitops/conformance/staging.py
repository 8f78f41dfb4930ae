"""The suite's sample models in a user's S3 storage: trained here, uploaded under the run's own prefix, and
removed at the end. Used wherever the suite brings its own models: a cluster run and a run on given endpoints.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions

from mmgitops.conformance.target import SampleRef
from mmgitops.errors import ToolError
from mmgitops.modelmesh import samples, storage

SAMPLES = 6
S3_PREFIX = "mmgitops-conformance"


def sample_prefix(run_id: str) -> str:
    return f"{S3_PREFIX}/{run_id}/"


def choose(storage_config: Path, storage_key: str | None) -> tuple[str, storage.StorageEntry]:
    """The storage the samples go to: the one named, or the file's only one; one line naming the file if not."""
    entries = storage.load_config(storage_config)
    if storage_key is None:
        if len(entries) != 1:
            raise ToolError(f"{storage_config}: {len(entries)} storages; choose one with --storage-key")
        storage_key = next(iter(entries))
    if storage_key not in entries:
        raise ToolError(f"{storage_config}: no storage named {storage_key!r}; storages found: "
                        f"{', '.join(sorted(entries))}")
    entry = entries[storage_key]
    if not entry.bucket:
        raise ToolError(f"{storage_config}: storage {storage_key!r} names no bucket to stage the samples in")
    return storage_key, entry


def stage(entry: storage.StorageEntry, storage_key: str, run_id: str,
          progress: Callable[[str], None] = lambda _: None) -> list[SampleRef]:
    progress(f"staging {SAMPLES} sample models in s3://{entry.bucket}/{sample_prefix(run_id)}")
    with tempfile.TemporaryDirectory(prefix="mmconf-samples-") as work:
        try:
            staged = samples.upload(samples.train(Path(work), SAMPLES), entry, entry.bucket, sample_prefix(run_id))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise ToolError(f"cannot stage the sample models in s3://{entry.bucket} at {entry.endpoint_url}: "
                            f"{str(error).splitlines()[0]}") from None
    return [SampleRef(s.name, s.expected, str(s.s3_path), s.model_key(storage_key)) for s in staged]


def remove(entry: storage.StorageEntry, run_id: str) -> int:
    """Delete the sample models a run staged; returns how many objects went."""
    s3 = storage.s3_client(entry)
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=entry.bucket, Prefix=sample_prefix(run_id)):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=entry.bucket, Key=item["Key"])
            removed += 1
    return removed
