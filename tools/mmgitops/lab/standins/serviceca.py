"""OpenShift service-ca stand-in: a Service annotated `service.{beta,alpha}.openshift.io/serving-cert-secret-name`
gets a `kubernetes.io/tls` Secret of that name with a certificate for `<svc>.<ns>.svc`, signed by the service CA, as
service-ca-operator's serving-cert controller makes it. modelmesh-serving's controller pod mounts one
(`modelmesh-webhook-server-cert`) and does not start without it.

The CA's key lives in the Secret `signing-key` of `openshift-service-ca`, where the operator keeps its own.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.kube import Kube

# service-ca-operator honours both; modelmesh-serving's Service carries the alpha one (service_controller.go), the
# overlay's webhook Service the beta one.
ANNOTATIONS = ("service.beta.openshift.io/serving-cert-secret-name",
               "service.alpha.openshift.io/serving-cert-secret-name")
CA_NAMESPACE, CA_SECRET = "openshift-service-ca", "signing-key"
VALIDITY = dt.timedelta(days=730)  # the operator's default for serving certificates: two years


def reconcile(kube: Kube) -> None:
    for svc in kube.core.list_service_for_all_namespaces().items:
        annotations = svc.metadata.annotations or {}
        name = next((annotations[a] for a in ANNOTATIONS if annotations.get(a)), None)
        if not name:
            continue
        try:
            kube.core.read_namespaced_secret(name, svc.metadata.namespace)
            continue
        except ApiException as exc:
            if exc.status != 404:
                raise
        ca_cert, ca_key = _ca(kube)
        hosts = [f"{svc.metadata.name}.{svc.metadata.namespace}.svc",
                 f"{svc.metadata.name}.{svc.metadata.namespace}.svc.cluster.local"]
        cert, key = _issue(hosts, ca_cert, ca_key)
        kube.core.create_namespaced_secret(svc.metadata.namespace, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "annotations": {"service.beta.openshift.io/originating-service-name":
                                                        svc.metadata.name}},
            "data": {"tls.crt": _b64(cert), "tls.key": _b64(key)}})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ca(kube: Kube) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        found = kube.core.read_namespaced_secret(CA_SECRET, CA_NAMESPACE).data or {}
        return (x509.load_pem_x509_certificate(base64.b64decode(found["tls.crt"])),
                serialization.load_pem_private_key(base64.b64decode(found["tls.key"]), None))
    except ApiException as exc:
        if exc.status != 404:
            raise
    cert, key = _issue([], None, None)
    kube.ensure_namespace(CA_NAMESPACE)
    kube.core.create_namespaced_secret(CA_NAMESPACE, {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": CA_SECRET},
        "data": {"tls.crt": _b64(cert), "tls.key": _b64(key)}})
    return x509.load_pem_x509_certificate(cert), serialization.load_pem_private_key(key, None)


def _issue(hosts: list[str], ca_cert: Any, ca_key: Any) -> tuple[bytes, bytes]:
    """A PEM certificate and key: for `hosts`, signed by the CA; or, with no CA, the CA itself (self-signed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    common_name = hosts[0] if hosts else "openshift-service-serving-signer"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY))
    if ca_cert is None:
        builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        signer = key
    else:
        builder = (builder.issuer_name(ca_cert.subject)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True))
        signer = ca_key
    cert = builder.sign(signer, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
