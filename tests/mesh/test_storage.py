"""Models pulled from S3 (a real moto server on loopback) and served by a real MLServer behind the SPI."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import joblib
import numpy as np
import pytest
from mmgitops.errors import ToolError
from mmgitops.lab.mesh import adapter, modelserver, storage
from mmgitops.lab.ports import free_port
from mmgitops.modelmesh import samples, stubs
from mmgitops.modelmesh.storage import StorageEntry, load_config, s3_client, write_config

pytestmark = pytest.mark.mesh
pb = adapter.pb
_, dataplane_pb2_grpc = stubs.v2()
STORAGE = "localS3"
BUCKET = "mesh-samples"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage.S3Server]:
    server = storage.S3Server.start(tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def uploaded(s3: storage.S3Server, tmp_path_factory: pytest.TempPathFactory) -> list[samples.Sample]:
    return samples.upload(samples.train(tmp_path_factory.mktemp("samples"), 3), s3.entry(STORAGE), BUCKET)


@dataclass
class Runtime:
    spi: object
    data: dataplane_pb2_grpc.GRPCInferenceServiceStub
    adapter: adapter.Adapter


@pytest.fixture(scope="module")
def runtime(s3: storage.S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    work = tmp_path_factory.mktemp("runtime")
    server = modelserver.start(work / "models", work / "mlserver.log")
    servicer = adapter.Adapter(server, adapter.RuntimeConfig(capacity_bytes=64 * 2**20),
                               puller=storage.Puller({STORAGE: s3.entry(STORAGE)}))
    port = free_port()
    spi = adapter.serve(servicer, port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    data_channel = grpc.insecure_channel(server.grpc_target)
    try:
        yield Runtime(adapter.pb_grpc.ModelRuntimeStub(channel),
                      dataplane_pb2_grpc.GRPCInferenceServiceStub(data_channel), servicer)
    finally:
        channel.close()
        data_channel.close()
        spi.stop(1)
        server.stop()


def s3_entry_json(secret: str, **overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {"type": "s3", "access_key_id": "AKTEST", "secret_access_key": secret,
                                "endpoint_url": "http://127.0.0.1:9000", "default_bucket": "models",
                                "region": "eu-west-1"}
    return {key: value for key, value in {**entry, **overrides}.items() if value is not None}


# --- storage-config -------------------------------------------------------------------------------------


def test_config_loads_from_a_json_file_and_from_a_mounted_secret_directory(tmp_path):
    secret = secrets.token_hex(16)
    # Secret data decodes to JSON text per key; a hand-written file may hold the objects themselves.
    document = {"localMinIO": s3_entry_json(secret), "other": json.dumps(s3_entry_json(secret, region=None))}
    (tmp_path / "storage.json").write_text(json.dumps(document), encoding="utf-8")
    from_file = load_config(tmp_path / "storage.json")
    assert from_file["localMinIO"] == StorageEntry(
        key="localMinIO", type="s3", access_key_id="AKTEST", secret_access_key=secret,
        endpoint_url="http://127.0.0.1:9000", bucket="models", region="eu-west-1")
    assert from_file["other"].region == "us-east-1"
    assert secret not in repr(from_file) and secret not in str(from_file["other"])

    # The layout kubelet gives a mounted Secret: key files linking into a timestamped directory via ..data.
    mounted = tmp_path / "storage-config"
    (mounted / "..2025_01_01_00_00_00.1").mkdir(parents=True)
    (mounted / "..data").symlink_to("..2025_01_01_00_00_00.1")
    for key, value in document.items():
        text = value if isinstance(value, str) else json.dumps(value)
        (mounted / "..data" / key).write_text(text, encoding="utf-8")
        (mounted / key).symlink_to(f"..data/{key}")
    assert load_config(mounted) == from_file

    written = write_config(tmp_path / "out" / "storage.json", from_file)
    assert written.stat().st_mode & 0o777 == 0o600
    assert load_config(written) == from_file


@pytest.mark.parametrize(("document", "expected"), [
    ({"local": {"type": "s3", "access_key_id": "AKTEST", "secret_access_key": "{secret}"}},
     "storage.json: storage 'local': field 'endpoint_url' is missing"),
    ({"local": {"type": "s3", "access_key_id": "{secret}", "secret_access_key": 12345678901,
                "endpoint_url": "http://127.0.0.1:9000"}},
     "storage.json: storage 'local': field 'secret_access_key' must be a string, got a number"),
    ({"local": '{"type": "s3", "secret_access_key": "{secret}", '},
     "storage.json: storage 'local': not JSON (Expecting property name enclosed in double quotes at line 1 column"),
    ({"local": {"type": "gcs", "private_key": "{secret}", "endpoint_url": "https://storage.googleapis.com"}},
     "storage.json: storage 'local': field 'type': 'gcs' is not supported (only s3)"),
    ({"local": {"type": "s3", "secret_access_key": "{secret}", "endpoint_url": "http://127.0.0.1:9000"}},
     "storage.json: storage 'local': field 'access_key_id' is missing"),
    ({"local": {"type": "s3", "endpoint_url": "127.0.0.1:9000", "secret_access_key": "{secret}",
                "access_key_id": "AKTEST"}},
     "storage.json: storage 'local': field 'endpoint_url' must start with http:// or https://"),
])
def test_a_bad_config_is_one_line_naming_file_storage_and_field_without_secrets(tmp_path, monkeypatch, document,
                                                                                 expected):
    secret = secrets.token_hex(16)
    monkeypatch.chdir(tmp_path)
    Path("storage.json").write_text(json.dumps(document).replace("{secret}", secret), encoding="utf-8")
    with pytest.raises(ToolError) as err:
        load_config(Path("storage.json"))
    message = str(err.value)
    assert message.startswith(expected)
    assert "\n" not in message and secret not in message and "12345678901" not in message


def test_a_bad_file_in_a_mounted_secret_is_named_by_its_path(tmp_path):
    secret = secrets.token_hex(16)
    (tmp_path / "good").write_text(json.dumps(s3_entry_json(secret)), encoding="utf-8")
    (tmp_path / "local").write_text(json.dumps(s3_entry_json(secret, endpoint_url=None)), encoding="utf-8")
    with pytest.raises(ToolError) as err:
        load_config(tmp_path)
    assert str(err.value) == f"{tmp_path / 'local'}: storage 'local': field 'endpoint_url' is missing"


# --- the puller -----------------------------------------------------------------------------------------


def test_pull_downloads_a_single_object_and_every_object_under_a_prefix(s3, tmp_path):
    client = s3_client(s3.entry())
    client.create_bucket(Bucket="pull-test")
    objects = {"m/file.bin": b"abc", "m/dir/a.txt": b"first", "m/dir/sub/b.txt": b"second!",
               "m/dir/": b"", "m/dirx/c.txt": b"a sibling whose name shares the prefix's text"}
    for key, body in objects.items():
        client.put_object(Bucket="pull-test", Key=key, Body=body)
    # No bucket in the model key: the storage's default bucket applies.
    puller = storage.Puller({"store": s3.entry("store", bucket="pull-test")})
    key = json.dumps({"storage_key": "store"})

    single = puller.pull("one", "m/file.bin", key, tmp_path / "dl")
    assert single == tmp_path / "dl" / "one" / "file.bin"
    assert single.read_bytes() == b"abc"

    prefix = puller.pull("many", "m/dir", json.dumps({"storage_key": "store", "bucket": "pull-test"}),
                         tmp_path / "dl")
    assert prefix == tmp_path / "dl" / "many"
    files = {str(p.relative_to(prefix)): p.read_bytes() for p in prefix.rglob("*") if p.is_file()}
    assert files == {"a.txt": b"first", "sub/b.txt": b"second!"}
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["many", "one"]  # no scratch left behind

    assert puller.size("m/file.bin", key) == 3
    assert puller.size("m/dir", key) == len(b"first") + len(b"second!")
    assert puller.size("m/nothing", key) is None
    assert puller.size("m/nothing", json.dumps({"storage_key": "store", "disk_size_bytes": 7})) == 7


def test_a_puller_on_a_mounted_secret_reads_it_again_at_each_pull(s3, tmp_path):
    # The adapter reads /storage-config/<key> at each load (GetStorageConfiguration): a replaced Secret counts
    # from the next load on, with no restart.
    client = s3_client(s3.entry())
    client.create_bucket(Bucket="reread-test")
    client.put_object(Bucket="reread-test", Key="m/file.bin", Body=b"xyz")
    mounted = tmp_path / "storage-config"
    mounted.mkdir()
    puller = storage.Puller(mounted)
    key = json.dumps({"storage_key": "store"})
    with pytest.raises(storage.PullError, match="no storage entries"):
        puller.pull("m-1", "m/file.bin", key, tmp_path / "dl")
    (mounted / "store").write_text(json.dumps({**s3.entry("store").to_json(), "bucket": "elsewhere"}))
    with pytest.raises(storage.PullError, match="no such bucket"):
        puller.pull("m-1", "m/file.bin", key, tmp_path / "dl")
    (mounted / "store").write_text(json.dumps(s3.entry("store", bucket="reread-test").to_json()))
    assert puller.pull("m-1", "m/file.bin", key, tmp_path / "dl").read_bytes() == b"xyz"


@pytest.mark.parametrize(("path", "key", "expected"), [
    ("m/absent.bin", {"storage_key": "store", "bucket": BUCKET},
     f"model m-1: storage 'store': s3://{BUCKET}/m/absent.bin: no such object or prefix"),
    ("m/file.bin", {"storage_key": "elsewhere"},
     "model m-1: storage 'elsewhere': path m/file.bin: no such storage in the storage config (known: store)"),
    ("m/file.bin", "{not json", "model m-1: path m/file.bin: model key is not JSON"),
    ("m/file.bin", {"storage_key": "store", "bucket": "no-such-bucket"},
     "model m-1: storage 'store': s3://no-such-bucket/m/file.bin: no such bucket"),
])
def test_pull_errors_are_one_line_naming_model_storage_and_path(s3, uploaded, tmp_path, path, key, expected):
    puller = storage.Puller({"store": s3.entry("store")})
    with pytest.raises(storage.PullError) as err:
        puller.pull("m-1", path, key if isinstance(key, str) else json.dumps(key), tmp_path / "dl")
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value) and s3.secret_access_key not in str(err.value)
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


# --- samples --------------------------------------------------------------------------------------------


def test_samples_are_small_quick_to_train_and_each_answers_its_own_k(tmp_path):
    started = time.monotonic()
    trained = samples.train(tmp_path, 20)
    assert time.monotonic() - started < 2
    assert [s.name for s in trained[:2]] == ["sample-00", "sample-01"]
    assert all(s.path.stat().st_size < 8192 for s in trained)
    probe = np.array([samples.PROBE], dtype=np.float32).reshape(samples.PROBE_SHAPE)
    answers = [joblib.load(s.path).predict(probe) for s in trained]
    assert [int(a[0]) for a in answers] == [s.expected for s in trained] == list(range(20))
    assert all(a.dtype == np.int64 for a in answers)


def test_upload_records_the_s3_path_and_size(s3, uploaded):
    client = s3_client(s3.entry())
    for sample in uploaded:
        assert sample.s3_path == f"models/{sample.name}/model.joblib"
        head = client.head_object(Bucket=BUCKET, Key=sample.s3_path)
        assert head["ContentLength"] == sample.size == sample.path.stat().st_size
    # modelmesh-serving's ModelKeyInfo: the puller adds disk_size_bytes itself after the download.
    assert json.loads(uploaded[1].model_key(STORAGE)) == {
        "storage_key": STORAGE, "storage_params": {"bucket": BUCKET}, "model_type": {"name": "sklearn"}}


# --- the SPI with the puller ----------------------------------------------------------------------------


def test_samples_loaded_from_s3_through_the_spi_answer_their_own_k(runtime, uploaded):
    key = json.dumps({"storage_key": STORAGE, "bucket": BUCKET})
    # sample-01 by its prefix (a directory once pulled), the others by their file.
    paths = [uploaded[0].s3_path, f"models/{uploaded[1].name}", uploaded[2].s3_path]
    for sample, path in zip(uploaded, paths, strict=True):
        loaded = runtime.spi.loadModel(pb.LoadModelRequest(
            modelId=f"s3-{sample.name}", modelType="sklearn", modelPath=path, modelKey=key), timeout=30)
        assert loaded.sizeInBytes == int(sample.size * 1.25)
        assert (runtime.adapter.downloads / f"s3-{sample.name}").is_dir()
    answers = [samples.answer(runtime.data.ModelInfer(samples.probe_request(f"s3-{s.name}"), timeout=10))
               for s in uploaded]
    assert answers == [0, 1, 2]

    runtime.spi.unloadModel(pb.UnloadModelRequest(modelId="s3-sample-00"), timeout=30)
    assert not (runtime.adapter.downloads / "s3-sample-00").exists()
    assert (runtime.adapter.downloads / "s3-sample-01").is_dir()
    with pytest.raises(grpc.RpcError):
        runtime.data.ModelInfer(samples.probe_request("s3-sample-00"), timeout=10)


def test_predict_model_size_uses_disk_size_bytes_then_the_s3_size_then_the_default(runtime, uploaded):
    def predict(path: str, **key: object) -> int:
        return runtime.spi.predictModelSize(pb.PredictModelSizeRequest(
            modelId="sized", modelType="sklearn", modelPath=path, modelKey=json.dumps(key)), timeout=15).sizeInBytes

    sample = uploaded[0]
    assert predict(sample.s3_path, storage_key=STORAGE, bucket=BUCKET, disk_size_bytes=4000) == 5000
    assert predict(sample.s3_path, storage_key=STORAGE, bucket=BUCKET) == int(sample.size * 1.25)
    assert predict(f"models/{sample.name}", storage_key=STORAGE, bucket=BUCKET) == int(sample.size * 1.25)
    assert predict("models/absent/model.joblib", storage_key=STORAGE, bucket=BUCKET) == 1_000_000
    assert predict(sample.s3_path, storage_key="unknown", bucket=BUCKET) == 1_000_000


def test_a_missing_s3_object_fails_the_load_with_internal_naming_the_path(runtime):
    with pytest.raises(grpc.RpcError) as err:
        runtime.spi.loadModel(pb.LoadModelRequest(
            modelId="m-absent", modelType="sklearn", modelPath="models/absent/model.joblib",
            modelKey=json.dumps({"storage_key": STORAGE, "bucket": BUCKET})), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details().startswith(
        f"model m-absent: storage '{STORAGE}': s3://{BUCKET}/models/absent/model.joblib: no such object")
    assert not (runtime.adapter.downloads / "m-absent").exists()
    assert not (runtime.adapter.server.models_dir / "m-absent").exists()
    with pytest.raises(grpc.RpcError) as err:
        runtime.spi.loadModel(pb.LoadModelRequest(
            modelId="m-nostore", modelType="sklearn", modelPath="models/sample-00/model.joblib",
            modelKey=json.dumps({"storage_key": "nowhere", "bucket": BUCKET})), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "model m-nostore: storage 'nowhere': path models/sample-00/model.joblib" in err.value.details()


def test_s3_server_stop_leaves_no_process(tmp_path):
    server = storage.S3Server.start(tmp_path / "moto.log")
    pid, port = server.pid, int(server.endpoint.rsplit(":", 1)[1])
    os.kill(pid, 0)  # running: raises if not
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nor anything else it started in its session
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
