"""A runtime pod's volumes as host directories, kept current as the kubelet keeps them, and each container's
mounts as host paths."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from mmgitops.lab.kubelet import KubeletError, MissingReference, Objects
from mmgitops.lab.kubelet.volumes import Unsupported, materialise

pytestmark = pytest.mark.unit
POD = "modelmesh-models/modelmesh-serving-mlserver-1.x-7d9f8c6b5-x2k4p"
ETCD = '{"endpoints": "http://etcd.redhat-ods-applications:2379", "root_prefix": "modelmesh-serving/mm_ns/m"}'
S3_KEY = "minio-secret-access-key"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def runtime_pod() -> dict[str, Any]:
    """The mlserver-1.x runtime pod's volumes and mounts as the controller renders them
    (modelmesh-serving-rendered-deployments.yaml), with storage-config cut to one key by `items`."""
    return {
        "metadata": {"name": POD.split("/")[1], "namespace": "modelmesh-models"},
        "spec": {
            "containers": [
                {"name": "mlserver", "volumeMounts": [{"mountPath": "/models", "name": "models-dir"}]},
                {"name": "mlserver-adapter",
                 "volumeMounts": [{"mountPath": "/models", "name": "models-dir"},
                                  {"mountPath": "/storage-config", "name": "storage-config", "readOnly": True}]},
                {"name": "mm",
                 "volumeMounts": [{"mountPath": "/etc/watson/mmesh/config", "name": "tc-config"},
                                  {"mountPath": "/opt/kserve/mmesh/etcd", "name": "etcd-config",
                                   "readOnly": True}]},
            ],
            "volumes": [
                {"name": "models-dir", "emptyDir": {"sizeLimit": "1536Mi"}},
                {"name": "storage-config",
                 "secret": {"secretName": "storage-config", "items": [{"key": "localMinIO", "path": "localMinIO"}]}},
                {"name": "tc-config", "configMap": {"name": "tc-config"}},
                {"name": "etcd-config", "secret": {"secretName": "model-serving-etcd"}},
            ],
        },
    }


def objects(type_constraints: str = '{"_default":{"required":["_no_runtime"]}}',
            dataplane: str = '{"rpcConfigs":{}}', etcd: str | None = ETCD) -> Objects:
    tc_data = {"type_constraints": type_constraints, "dataplane_api_config": dataplane}
    etcd_data = {"etcd_connection": b64(etcd)} if etcd is not None else {}
    return Objects(
        config_maps={"tc-config": {"metadata": {"name": "tc-config"},
                                   "data": {k: v for k, v in tc_data.items() if v is not None}}},
        secrets={"model-serving-etcd": {"metadata": {"name": "model-serving-etcd"}, "data": etcd_data},
                 "storage-config": {"metadata": {"name": "storage-config"},
                                    "data": {"localMinIO": b64(f'{{"secret_access_key": "{S3_KEY}"}}'),
                                             "otherS3": b64("{}")}}},
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files(directory: Path) -> dict[str, str]:
    """What a container sees in the volume: its files through the `..data` links, not the versions behind them."""
    out = {}
    for parent, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        for name in names:
            path = Path(parent, name)
            if not name.startswith("..") and ".." not in path.relative_to(directory).parts[0][:2]:
                out[str(path.relative_to(directory))] = path.read_text()
    return dict(sorted(out.items()))


def refusal(pod: dict[str, Any], root: Path, found: Objects | None = None, **kwargs: Any) -> KubeletError:
    with pytest.raises(KubeletError) as caught:
        materialise(pod, found or objects(), root, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and S3_KEY not in message and "etcd.redhat" not in message
    return caught.value


# ---- the runtime pod -------------------------------------------------------------------------------------


def test_each_container_gets_its_mounts_as_host_paths(tmp_path: Path):
    mounts = materialise(runtime_pod(), objects(), tmp_path)
    assert mounts == {
        "mlserver": {"/models": tmp_path / "models-dir"},
        "mlserver-adapter": {"/models": tmp_path / "models-dir", "/storage-config": tmp_path / "storage-config"},
        "mm": {"/etc/watson/mmesh/config": tmp_path / "tc-config", "/opt/kserve/mmesh/etcd": tmp_path / "etcd-config"},
    }
    assert (tmp_path / "models-dir").is_dir() and not any((tmp_path / "models-dir").iterdir())


def test_configmap_and_secret_volumes_hold_their_keys(tmp_path: Path):
    materialise(runtime_pod(), objects(), tmp_path)
    assert files(tmp_path / "tc-config") == {"dataplane_api_config": '{"rpcConfigs":{}}',
                                             "type_constraints": '{"_default":{"required":["_no_runtime"]}}'}
    assert files(tmp_path / "etcd-config") == {"etcd_connection": ETCD}
    # items: only the listed key, at its path.
    assert files(tmp_path / "storage-config") == {"localMinIO": f'{{"secret_access_key": "{S3_KEY}"}}'}


def test_secret_files_are_owner_only_and_configmap_files_readable(tmp_path: Path):
    materialise(runtime_pod(), objects(), tmp_path)
    assert mode(tmp_path / "etcd-config" / "etcd_connection") == 0o600
    assert mode(tmp_path / "etcd-config") == 0o700
    assert mode(tmp_path / "tc-config" / "type_constraints") == 0o644


def test_default_mode_and_item_mode_are_honoured(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"][1]["secret"].update(
        defaultMode=0o440, items=[{"key": "localMinIO", "path": "s3/local", "mode": 0o400},
                                  {"key": "otherS3", "path": "s3/other"}])
    pod["spec"]["volumes"][2]["configMap"]["defaultMode"] = 0o600
    materialise(pod, objects(), tmp_path)
    assert mode(tmp_path / "storage-config" / "s3" / "local") == 0o400
    assert mode(tmp_path / "storage-config" / "s3" / "other") == 0o440
    assert mode(tmp_path / "tc-config" / "dataplane_api_config") == 0o600


# ---- keeping a volume current ----------------------------------------------------------------------------


def test_a_second_run_swaps_in_a_new_version_only_when_something_changed(tmp_path: Path):
    pod = runtime_pod()
    materialise(pod, objects(), tmp_path)
    tc, etcd = tmp_path / "tc-config", tmp_path / "etcd-config"
    first = os.readlink(tc / "..data")
    materialise(pod, objects(), tmp_path)
    assert os.readlink(tc / "..data") == first  # nothing changed: nothing written
    (tmp_path / "models-dir" / "model.bin").write_text("loaded")

    materialise(pod, objects(type_constraints='{"rt:mlserver-1.x":{}}', etcd=None), tmp_path)

    assert files(tc) == {"dataplane_api_config": '{"rpcConfigs":{}}', "type_constraints": '{"rt:mlserver-1.x":{}}'}
    # AtomicWriter's layout, which ModelMesh's ConfigMapKeyFileWatcher watches: `..data` swapped to a new version,
    # each key a link through it, the old version gone.
    assert os.readlink(tc / "..data") != first and not (tc / first).exists()
    assert os.readlink(tc / "type_constraints") == "..data/type_constraints"
    assert files(etcd) == {}  # the key left the Secret
    assert files(tmp_path / "models-dir") == {"model.bin": "loaded"}  # an emptyDir lives as long as the pod


def test_a_key_removed_from_a_configmap_goes_with_its_directories(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"][2]["configMap"]["items"] = [{"key": "type_constraints", "path": "deep/er/tc"},
                                                       {"key": "dataplane_api_config", "path": "dp"}]
    materialise(pod, objects(), tmp_path)
    pod["spec"]["volumes"][2]["configMap"]["items"] = [{"key": "dataplane_api_config", "path": "dp"}]
    materialise(pod, objects(), tmp_path)
    assert sorted(p.name for p in (tmp_path / "tc-config").iterdir() if not p.name.startswith("..")) == ["dp"]
    assert files(tmp_path / "tc-config") == {"dp": '{"rpcConfigs":{}}'}


def test_a_changed_mode_alone_is_applied(tmp_path: Path):
    pod = runtime_pod()
    materialise(pod, objects(), tmp_path)
    pod["spec"]["volumes"][2]["configMap"]["defaultMode"] = 0o640
    materialise(pod, objects(), tmp_path)
    assert mode(tmp_path / "tc-config" / "type_constraints") == 0o640


def test_a_version_a_killed_run_left_half_written_is_removed(tmp_path: Path):
    materialise(runtime_pod(), objects(), tmp_path)
    (tmp_path / "etcd-config" / "..2026_01_01_00_00_00.half").mkdir()
    materialise(runtime_pod(), objects(etcd='{"endpoints": "http://etcd:2379"}'), tmp_path)
    assert sorted(p.name for p in (tmp_path / "etcd-config").iterdir() if p.name != "..data"
                  and not p.is_symlink()) == [os.readlink(tmp_path / "etcd-config" / "..data")]


# ---- optional, subPath, projected ------------------------------------------------------------------------


def test_optional_sources_that_are_missing_give_what_there_is(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"][2]["configMap"].update(name="absent", optional=True)
    pod["spec"]["volumes"][1]["secret"].update(optional=True, items=[{"key": "gone", "path": "g"},
                                                                     {"key": "otherS3", "path": "o"}])
    materialise(pod, objects(), tmp_path)
    assert files(tmp_path / "tc-config") == {}
    assert files(tmp_path / "storage-config") == {"o": "{}"}


def test_sub_paths_point_below_the_volume_and_a_missing_one_is_created(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["containers"][2]["volumeMounts"].append(
        {"mountPath": "/tc", "name": "tc-config", "subPath": "type_constraints"})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"mountPath": "/cache", "name": "models-dir", "subPath": "_mlserver_models/cache"})
    mounts = materialise(pod, objects(), tmp_path)
    assert mounts["mm"]["/tc"] == tmp_path / "tc-config" / "type_constraints"
    assert mounts["mm"]["/tc"].read_text() == '{"_default":{"required":["_no_runtime"]}}'
    assert mounts["mlserver"]["/cache"].is_dir()


def test_sub_path_expressions_expand_the_containers_env(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"mountPath": "/logs", "name": "models-dir", "subPathExpr": "logs/$(POD)"})
    mounts = materialise(pod, objects(), tmp_path)
    assert mounts["mlserver"]["/logs"] == tmp_path / "models-dir" / "logs" / POD.split("/")[1]
    assert mounts["mlserver"]["/logs"].is_dir()


def kube_api_access() -> dict[str, Any]:
    """The volume ServiceAccount admission adds to every pod."""
    return {"name": "kube-api-access-7xk2q", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    "path": "namespace"}]}}]}}


def test_the_service_account_volume_is_projected_with_a_token_from_the_caller(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"].append(kube_api_access())
    pod["spec"]["containers"][2]["volumeMounts"].append(
        {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-7xk2q"})
    found = objects()
    found.config_maps["kube-root-ca.crt"] = {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}
    asked: list[tuple[str, int]] = []

    def token(audience: str, seconds: int) -> str:
        asked.append((audience, seconds))
        return "jwt"

    mounts = materialise(pod, found, tmp_path, token=token)
    directory = mounts["mm"]["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert files(directory) == {"ca.crt": "-----BEGIN CERTIFICATE-----", "namespace": "modelmesh-models",
                                "token": "jwt"}
    assert asked == [("", 3607)]
    assert mode(directory) == 0o700  # it holds a credential


# ---- what cannot be materialised -------------------------------------------------------------------------


def test_a_missing_secret_names_pod_volume_and_secret(tmp_path: Path):
    found = objects()
    del found.secrets["model-serving-etcd"]
    error = refusal(runtime_pod(), tmp_path, found)
    assert isinstance(error, MissingReference)
    assert str(error) == f"pod {POD}: volume etcd-config: Secret model-serving-etcd not found"


def test_a_missing_item_key_names_the_key_and_never_a_value(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"][1]["secret"]["items"].append({"key": "awsS3", "path": "awsS3"})
    error = refusal(pod, tmp_path)
    assert isinstance(error, MissingReference)
    assert str(error) == f"pod {POD}: volume storage-config: key awsS3 not found in Secret storage-config"


def test_a_secret_that_is_not_base64_is_named_by_key(tmp_path: Path):
    found = objects()
    found.secrets["storage-config"]["data"]["localMinIO"] = S3_KEY
    error = refusal(runtime_pod(), tmp_path, found)
    assert str(error) == f"pod {POD}: volume storage-config: Secret storage-config: data key localMinIO is not base64"


def test_a_claim_is_unsupported_unless_the_containers_mounting_it_are_left_out(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"].append({"name": "proxy-tls", "persistentVolumeClaim": {"claimName": "tls"}})
    pod["spec"]["containers"].append({"name": "oauth-proxy", "volumeMounts": [
        {"mountPath": "/etc/tls/private", "name": "proxy-tls"}]})
    error = refusal(pod, tmp_path)
    assert isinstance(error, Unsupported)
    assert str(error).startswith(f"pod {POD}: volume proxy-tls: persistentVolumeClaim volumes are not materialised")
    mounts = materialise(pod, objects(), tmp_path / "without", containers={"mm", "mlserver-adapter"})
    assert set(mounts) == {"mm", "mlserver-adapter"}
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == [
        "etcd-config", "models-dir", "storage-config", "tc-config"]


def test_a_projected_token_without_a_token_source_is_unsupported(tmp_path: Path):
    pod = runtime_pod()
    pod["spec"]["volumes"].append(kube_api_access())
    error = refusal(pod, tmp_path)
    assert isinstance(error, Unsupported)
    assert "volume kube-api-access-7xk2q: projected serviceAccountToken needs a token source" in str(error)


@pytest.mark.parametrize(("change", "message"), [
    (lambda pod: pod["spec"]["containers"][2]["volumeMounts"].append({"mountPath": "/x", "name": "nowhere"}),
     "container mm: volumeMount /x: cannot find volume nowhere to mount into container mm"),
    (lambda pod: pod["spec"]["containers"][2]["volumeMounts"].append(
        {"mountPath": "/x", "name": "models-dir", "subPath": "../../etc"}),
     "container mm: volumeMount /x: subPath '../../etc' must be a relative path without '..'"),
    (lambda pod: pod["spec"]["volumes"][2]["configMap"].update(items=[{"key": "type_constraints", "path": "/etc/x"}]),
     "volume tc-config: item path '/etc/x' must be a relative path without '..'"),
    (lambda pod: pod["spec"]["containers"][2]["volumeMounts"].append(
        {"mountPath": "/x", "name": "models-dir", "subPathExpr": "$(UNSET)"}),
     "container mm: volumeMount /x: subPathExpr '$(UNSET)': missing value for UNSET"),
    (lambda pod: pod["spec"]["volumes"].append({"name": "both", "emptyDir": {}, "hostPath": {"path": "/"}}),
     "volume both: more than one volume source: emptyDir, hostPath"),
])
def test_what_the_kubelet_refuses_is_named_and_nothing_escapes_the_root(tmp_path: Path, change: Any, message: str):
    pod = runtime_pod()
    change(pod)
    error = refusal(pod, tmp_path / "pod")
    assert str(error) == f"pod {POD}: {message}"
    assert not (tmp_path / "etc").exists()
