"""ModelMesh's and modelmesh-serving's numbers that more than one part of this project needs, each with where
upstream sets it."""

from __future__ import annotations

# ModelMesh sizes models and caches in 8 KiB units (ModelMesh.UNIT_SIZE).
UNIT_BYTES = 8192
# A runtime pod's ports (modelmesh-serving config/internal/base/deployment.yaml.tmpl, the `modelmesh` container).
GRPC_PORT, REST_PORT, METRICS_PORT, PROBE_PORT = 8033, 8008, 2112, 8089
# ModelMesh names a pod's instance by the last 12 characters of the pod's name (its start script), and a copy's
# location by that instance id (getVModelStatus modelCopyInfos).
INSTANCE_ID_LENGTH = 12
# A load that would evict a model used less than this long ago is refused (ModelMesh.MIN_CHURN_AGE_MS default).
MIN_CHURN_AGE_MS = 300_000
# A pod republishes its instance record at most this often, and at least this often when it changed enough
# (ModelMesh.INSTANCE_REC_PUBLISH_MIN_PERIOD_MS, INSTANCE_REC_PUBLISH_FREQ_MS).
PUBLISH_MIN_PERIOD_S = 2.0
PUBLISH_PERIOD_S = 40.0


def instance_id(pod_name: str) -> str:
    return pod_name[-INSTANCE_ID_LENGTH:]
