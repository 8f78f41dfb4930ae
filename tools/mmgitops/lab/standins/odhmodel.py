"""odh-model-controller stand-in, its ModelMesh part that runtime pods depend on: the ServiceAccount
`modelmesh-serving-sa` in each namespace that holds a ModelMesh InferenceService, removed with the last one
(controllers/reconcilers/mm_serviceaccount_reconciler.go, a SingleResourcePerNamespace reconciler).

modelmesh-serving's runtime Deployments name that account and do not create it; without it kube-apiserver's
ServiceAccount admission refuses every runtime pod. The Route and the auth-delegator binding odh-model-controller
also makes for ModelMesh are not made here (no router, no oauth-proxy).
"""

from __future__ import annotations

from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.kube import Kube

ACCOUNT = "modelmesh-serving-sa"
MODE = "serving.kserve.io/deploymentMode"


def reconcile(kube: Kube) -> None:
    served: set[str] = set()
    for isvc in kube.list("serving.kserve.io", "v1beta1", "inferenceservices"):
        meta = isvc["metadata"]
        if (meta.get("annotations") or {}).get(MODE) == "ModelMesh" and not meta.get("deletionTimestamp"):
            served.add(meta["namespace"])
    have = {sa.metadata.namespace for sa in
            kube.core.list_service_account_for_all_namespaces(field_selector=f"metadata.name={ACCOUNT}").items}
    for namespace in sorted(served - have):
        try:
            kube.core.create_namespaced_service_account(
                namespace, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}})
        except ApiException as exc:
            if exc.status not in (403, 404, 409):  # a namespace going away, or made meanwhile
                raise
    for namespace in sorted(have - served):
        try:
            kube.core.delete_namespaced_service_account(ACCOUNT, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
