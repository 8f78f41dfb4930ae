"""ModelMesh made Managed on a local cluster as a platform team makes it: a DSCInitialization and a
DataScienceCluster with `modelmeshserving: Managed`. The RHOAI operator's stand-in then installs modelmesh-serving
(its controller and etcd) from the overlay (overlay.py)."""

from __future__ import annotations

from typing import Any

import yaml

APPLICATIONS = "redhat-ods-applications"
DSCI = ("dscinitialization.opendatahub.io", "v1", "dscinitializations")
DSC = ("datasciencecluster.opendatahub.io", "v1", "datascienceclusters")


def manage_modelmesh(api: Any, applications: str = APPLICATIONS, churn_age_ms: int | None = None) -> None:
    """`churn_age_ms`: ModelMesh's churn guard (tas.min_churn_age_ms, 300 s by default) for every runtime pod, set
    as the conformance profile's fast-churn component sets it, in model-serving-config."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(*DSCI[:2], DSCI[2], {
        "apiVersion": "/".join(DSCI[:2]), "kind": "DSCInitialization", "metadata": {"name": "default-dsci"},
        "spec": {"applicationsNamespace": applications}})
    custom.create_cluster_custom_object(*DSC[:2], DSC[2], {
        "apiVersion": "/".join(DSC[:2]), "kind": "DataScienceCluster", "metadata": {"name": "default-dsc"},
        "spec": {"components": {"modelmeshserving": {"managementState": "Managed"}}}})
    if churn_age_ms is not None:
        config = {"internalModelMeshEnvVars": [
            {"name": "CUSTOM_JVM_ARGS", "value": f"-Dtas.min_churn_age_ms={churn_age_ms}"}]}
        core = client.CoreV1Api(api)
        if applications not in {n.metadata.name for n in core.list_namespace().items}:
            core.create_namespace({"metadata": {"name": applications}})
        core.create_namespaced_config_map(applications, {
            "metadata": {"name": "model-serving-config"}, "data": {"config.yaml": yaml.safe_dump(config)}})
