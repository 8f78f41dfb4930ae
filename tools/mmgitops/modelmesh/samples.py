"""Sample models the suite and the local mesh deploy: small scikit-learn classifiers, each telling itself apart.

Sample k answers the integer k for the probe input (tensor "predict", FP32, shape [1, 4], all ones),
so a response shows which model served it: a request routed to the wrong model gives the wrong number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import botocore.exceptions
import numpy as np

from mmgitops.modelmesh import ids, stubs
from mmgitops.modelmesh.storage import StorageEntry, s3_client

PROBE_INPUT = "predict"
PROBE_DATATYPE = "FP32"
PROBE_SHAPE = (1, 4)
PROBE = (1.0, 1.0, 1.0, 1.0)
# The same probe as a KServe v2 REST body, for the REST proxy and for people with curl.
PROBE_JSON = json.dumps({"inputs": [{"name": PROBE_INPUT, "shape": list(PROBE_SHAPE), "datatype": PROBE_DATATYPE,
                                     "data": list(PROBE)}]})
FILENAME = "model.joblib"
# Points near the probe are labelled k and points near the origin another class, so each sample is a
# real two-class tree whose answer for the probe is k.
_NEAR_PROBE = [[1.0, 1.0, 1.0, 1.0], [0.9, 1.1, 1.0, 1.0], [1.0, 1.0, 0.9, 1.1]]
_NEAR_ORIGIN = [[0.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.1, 0.0], [0.0, 0.1, 0.0, 0.1]]


MODEL_FORMAT = "sklearn"


@dataclass(frozen=True)
class Sample:
    """A trained sample: where it is on disk, and once uploaded where it is in S3 and how large."""

    name: str
    expected: int  # the integer it answers for the probe
    path: Path
    bucket: str | None = None
    s3_path: str | None = None  # the key in the bucket, as ModelInfo.path names it
    size: int | None = None

    def model_key(self, storage_key: str) -> str:
        """The model key (JSON) modelmesh-serving registers an InferenceService with once this sample is
        uploaded: its ModelKeyInfo (controllers/predictor_controller.go setVModel). The runtime adapter takes
        the model type from it (the MLServer adapter picks the implementation by `model_type.name`); the puller
        adds `disk_size_bytes` itself after the download."""
        if self.bucket is None or self.s3_path is None:
            raise ValueError(f"sample {self.name} is not uploaded")
        return ids.bucket_model_key(storage_key, self.bucket, MODEL_FORMAT)


def train(dest_dir: Path, count: int, pad_bytes: int = 0, first: int = 0) -> list[Sample]:
    """dest_dir/sample-NN/model.joblib for k in first..first+count-1; sample k predicts k for the probe.

    pad_bytes: random bytes carried by each model, so that it weighs that much on disk. ModelMesh refuses a
    cache smaller than about ten default-size models (10 MB, sizing.min_capacity_bytes), so filling a
    cache with a handful of models takes models of a few MB."""
    # Imported here: scikit-learn takes seconds to import, and only `up` trains.
    import joblib
    from sklearn.tree import DecisionTreeClassifier

    x = np.array(_NEAR_PROBE + _NEAR_ORIGIN, dtype=np.float32)
    samples = []
    for k in range(first, first + count):
        # INT64 labels, so MLServer answers with an INT64 tensor.
        y = np.array([k] * len(_NEAR_PROBE) + [k + 1] * len(_NEAR_ORIGIN), dtype=np.int64)
        name = f"sample-{k:02d}"
        path = dest_dir / name / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        model = DecisionTreeClassifier(random_state=0).fit(x, y)
        if pad_bytes:
            # an extra attribute pickles with the model and is ignored by predict()
            model.mmgitops_padding = np.random.default_rng(k).integers(0, 256, pad_bytes, dtype=np.uint8)
        joblib.dump(model, path)
        samples.append(Sample(name=name, expected=k, path=path))
    return samples


def upload(samples: Iterable[Sample], entry: StorageEntry, bucket: str, prefix: str = "models") -> list[Sample]:
    """Each sample at s3://bucket/<prefix>/<name>/model.joblib (bucket created if missing); with S3 path and size."""
    client = s3_client(entry)
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        # us-east-1 refuses an explicit LocationConstraint; every other region requires one.
        where = {} if entry.region == "us-east-1" else {"CreateBucketConfiguration": {
            "LocationConstraint": entry.region}}
        client.create_bucket(Bucket=bucket, **where)
    uploaded = []
    for sample in samples:
        key = f"{prefix.strip('/')}/{sample.name}/{FILENAME}" if prefix.strip("/") else f"{sample.name}/{FILENAME}"
        client.upload_file(str(sample.path), bucket, key)
        uploaded.append(replace(sample, bucket=bucket, s3_path=key, size=sample.path.stat().st_size))
    return uploaded


def probe_request(model_name: str) -> Any:
    """The KServe v2 gRPC request every sample answers with its own k."""
    v2_pb, _ = stubs.v2()
    return v2_pb.ModelInferRequest(model_name=model_name, inputs=[
        v2_pb.ModelInferRequest.InferInputTensor(
            name=PROBE_INPUT, datatype=PROBE_DATATYPE, shape=list(PROBE_SHAPE),
            contents=v2_pb.InferTensorContents(fp32_contents=list(PROBE)))])


def answer(response: Any) -> int:
    """The integer in a probe response, whether the server sent raw bytes or typed contents."""
    if response.raw_output_contents:
        return int(np.frombuffer(response.raw_output_contents[0], dtype=np.int64)[0])
    return int(response.outputs[0].contents.int64_contents[0])
