"""OpenShift's project self-provisioning on the local cluster, as a least-privileged ServiceAccount sees it:
ProjectRequests through kube-apiserver's aggregation layer (lab/standins/projects/), the audit log of that
identity's calls (lab/cluster/audit.py), and RHOAI's model-serving roles folded into `admin`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from mmgitops.lab.cluster.audit import audit_events
from mmgitops.lab.cluster.cluster import AUDITED_NAMESPACE
from mmgitops.lab.standins.projects import api as projects
from mmgitops.lab.standins.projects import template as templates

pytestmark = pytest.mark.integration
RBAC = "rbac.authorization.k8s.io"


def admin_api(cluster: dict) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


def eventually(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
            if result:
                return result
        except (ApiException, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds:.0f} s: {check}")
        time.sleep(0.3)


def identity_api(cluster: dict, api: client.ApiClient, account: str, tmp: Path) -> client.ApiClient:
    """A kubeconfig of the cluster's server and CA with a TokenRequest token of AUDITED_NAMESPACE/account."""
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, AUDITED_NAMESPACE, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                     "spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(Path(cluster["kubeconfig"]).read_text(encoding="utf-8"))
    server = admin["clusters"][0]["cluster"]
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": account,
                  "clusters": [{"name": "local", "cluster": server}],
                  "users": [{"name": account, "user": {"token": token}}],
                  "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}]}
    path = tmp / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
    return config.new_client_from_config(config_file=str(path))


class Identity:
    def __init__(self, user: str, api: client.ApiClient) -> None:
        self.user, self.api = user, api
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def request(self, name: str, **fields: str) -> dict:
        body = {"apiVersion": projects.GROUP_VERSION, "kind": "ProjectRequest", "metadata": {"name": name}, **fields}
        return self.custom.create_cluster_custom_object(projects.GROUP, projects.VERSION, "projectrequests", body)


@pytest.fixture(scope="module")
def made(cluster: dict) -> Iterator[list[str]]:
    """Namespaces the tests made: deleted at the end, with their requester roles."""
    names: list[str] = []
    yield names
    core = client.CoreV1Api(admin_api(cluster))
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def accounts(cluster: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[bool], Identity]]:
    """Make ServiceAccounts in AUDITED_NAMESPACE, bound to self-provisioner or to nothing; removed afterwards."""
    api = admin_api(cluster)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    tmp = tmp_path_factory.mktemp("identities")
    made_accounts: list[str] = []

    def make(self_provisioner: bool) -> Identity:
        account = f"projects-{secrets.token_hex(3)}"
        core.create_namespaced_service_account(AUDITED_NAMESPACE, {"metadata": {"name": account}})
        made_accounts.append(account)
        user = f"system:serviceaccount:{AUDITED_NAMESPACE}:{account}"
        if self_provisioner:
            rbac.create_cluster_role_binding({
                "metadata": {"name": account},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": projects.SELF_PROVISIONER},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": AUDITED_NAMESPACE}]})
        return Identity(user, identity_api(cluster, api, account, tmp))

    yield make
    for account in made_accounts:
        for delete, args in ((rbac.delete_cluster_role_binding, (account,)),
                             (core.delete_namespaced_service_account, (account, AUDITED_NAMESPACE))):
            try:
                delete(*args)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_the_project_api_is_served_and_merged_into_discovery(cluster):
    api = admin_api(cluster)
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert groups[projects.GROUP].preferred_version.group_version == projects.GROUP_VERSION
    resources = client.CustomObjectsApi(api).get_api_resources(projects.GROUP, projects.VERSION)
    verbs = {r.name: sorted(r.verbs) for r in resources.resources}
    assert verbs == {"projectrequests": ["create", "list"], "projects": ["delete", "get", "list", "watch"]}
    service = client.ApiregistrationV1Api(api).read_api_service(projects.APISERVICE)
    assert service.spec.group_priority_minimum == 9900 and service.spec.version_priority == 15
    assert any(c.type == "Available" and c.status == "True" for c in service.status.conditions)


def test_a_self_provisioner_gets_a_project_it_administers_and_deletes(cluster, accounts, made):
    me, other = accounts(True), accounts(True)
    mine, theirs = name("mine"), name("theirs")
    made += [mine, theirs]
    project = me.request(mine, displayName="Mine", description="made by a test")
    assert project["kind"] == "Project" and project["apiVersion"] == projects.GROUP_VERSION
    assert project["metadata"]["name"] == mine and project["status"]["phase"] == "Active"
    assert project["metadata"]["annotations"] == {"openshift.io/requester": me.user,
                                                  "openshift.io/display-name": "Mine",
                                                  "openshift.io/description": "made by a test"}
    assert project["spec"]["finalizers"] == ["kubernetes"]
    other.request(theirs)
    secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    me.core.create_namespaced_secret(mine, secret)
    assert status_of(lambda: me.core.create_namespaced_secret(theirs, secret)) == 403
    assert status_of(lambda: me.core.create_namespaced_secret("default", secret)) == 403
    assert me.custom.get_cluster_custom_object(projects.GROUP, projects.VERSION, "projects", mine)["metadata"][
        "name"] == mine
    delete = me.custom.delete_cluster_custom_object
    assert status_of(lambda: delete(projects.GROUP, projects.VERSION, "projects", theirs)) == 403
    answer = delete(projects.GROUP, projects.VERSION, "projects", mine)
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    phase = client.CoreV1Api(admin_api(cluster)).read_namespace(mine).status.phase
    assert phase == "Terminating"
    rbac = client.RbacAuthorizationV1Api(admin_api(cluster))
    assert [r.metadata.name for r in rbac.list_cluster_role(
        label_selector=f"{projects.REQUESTER_LABEL}={mine}").items] == []


def test_project_requests_are_refused_as_openshift_refuses_them(cluster, accounts, made):
    me, nobody = accounts(True), accounts(False)
    taken = name("taken")
    made.append(taken)
    me.request(taken)
    assert status_of(lambda: me.request(taken)) == 409
    assert status_of(lambda: me.request("openshift")) == 403
    assert status_of(lambda: me.request("kube-mine")) == 403
    assert status_of(lambda: me.request("Not_A_Label")) == 422
    assert status_of(lambda: nobody.request(name("nobodys"))) == 403  # kube-apiserver refuses: no self-provisioner


def test_a_project_template_labels_new_projects(cluster, accounts, made):
    api = admin_api(cluster)
    core = client.CoreV1Api(api)
    template = templates.default_template()
    template["objects"][0]["metadata"]["labels"] = {"modelmesh-enabled": "true"}
    try:
        core.create_namespace({"metadata": {"name": projects.TEMPLATE_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    core.create_namespaced_config_map(projects.TEMPLATE_NAMESPACE, {
        "metadata": {"name": projects.TEMPLATE_CONFIGMAP}, "data": {projects.TEMPLATE_KEY: yaml.safe_dump(template)}})
    try:
        me, labelled = accounts(True), name("labelled")
        made.append(labelled)
        project = me.request(labelled)
        assert project["metadata"]["labels"]["modelmesh-enabled"] == "true"
        assert core.read_namespace(labelled).metadata.labels["modelmesh-enabled"] == "true"
        me.core.create_namespaced_config_map(labelled, {"metadata": {"name": "x"}})  # still its admin
    finally:
        core.delete_namespaced_config_map(projects.TEMPLATE_CONFIGMAP, projects.TEMPLATE_NAMESPACE)


def test_the_audit_log_records_an_audited_identitys_calls(cluster, accounts, made):
    me, audited = accounts(True), name("audited")
    made.append(audited)
    me.request(audited)
    me.core.list_namespaced_secret(audited)
    assert cluster["audit_log"]
    events = eventually(lambda: audit_events(me.user, Path(cluster["audit_log"])))
    seen = {(e["verb"], e["objectRef"].get("resource"), e["responseStatus"]["code"]) for e in events}
    assert ("create", "projectrequests", 201) in seen and ("list", "secrets", 200) in seen
    assert all(e["stage"] == "ResponseComplete" and e["level"] == "Metadata" for e in events)
    assert audit_events(f"system:serviceaccount:{AUDITED_NAMESPACE}:nobody-{secrets.token_hex(3)}",
                        Path(cluster["audit_log"])) == []
    # The cluster admin (kwokctl's certificate) is not audited: the log stays small.
    assert audit_events("kwok-admin", Path(cluster["audit_log"])) == []


DSCI = {"apiVersion": "dscinitialization.opendatahub.io/v1", "kind": "DSCInitialization",
        "metadata": {"name": "default-dsci"}, "spec": {"applicationsNamespace": "redhat-ods-applications"}}
DSC = {"apiVersion": "datasciencecluster.opendatahub.io/v1", "kind": "DataScienceCluster",
       "metadata": {"name": "default-dsc"},
       "spec": {"components": {"modelmeshserving": {"managementState": "Managed"}}}}


def test_a_project_admin_may_create_inference_services_once_modelmesh_is_managed(cluster, accounts, made):
    """RHOAI's model-serving-edit role, aggregated into model-serving-admin and admin by kube-controller-manager."""
    api = admin_api(cluster)
    custom = client.CustomObjectsApi(api)
    created = []
    for body, plural in ((DSCI, "dscinitializations"), (DSC, "datascienceclusters")):
        group, _, version = body["apiVersion"].partition("/")
        if not custom.list_cluster_custom_object(group, version, plural)["items"]:  # another test's stays as it is
            custom.create_cluster_custom_object(group, version, plural, body)
            created.append((group, version, plural, body["metadata"]["name"]))
    try:
        me, serving = accounts(True), name("serving")
        made.append(serving)
        me.request(serving)
        review = {"spec": {"resourceAttributes": {"namespace": serving, "verb": "create",
                                                  "group": "serving.kserve.io", "resource": "inferenceservices"}}}
        eventually(lambda: client.AuthorizationV1Api(me.api).create_self_subject_access_review(review).status.allowed)
        isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "probe", "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                                 "storage": {"key": "none", "path": "none"}}}}}
        me.custom.create_namespaced_custom_object("serving.kserve.io", "v1beta1", serving, "inferenceservices", isvc)
        rules = client.RbacAuthorizationV1Api(api).read_cluster_role("model-serving-edit").rules
        assert rules[0].api_groups == ["serving.kserve.io"]
    finally:
        for group, version, plural, obj_name in reversed(created):
            custom.delete_cluster_custom_object(group, version, plural, obj_name)
