"""TLS: with a certificate configured the server speaks TLS 1.3 and refuses older versions."""

from __future__ import annotations

import datetime as dt
import ssl

import httpx
import pytest
import serving_helpers as h

from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.service import ModelService
from pipelines.storage import LocalObjectStore


def _self_signed(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_tls13_only(tmp_path):
    cert, key = _self_signed(tmp_path)
    store = LocalObjectStore(tmp_path / "store")
    h.promote(store, h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "m", seed=1),
                            version="1.0", task="classification"))
    config = ServingConfig(tls_cert=str(cert), tls_key=str(key), cache_dir=str(tmp_path / "cache"), poll_seconds=5)
    service = ModelService(config=config, store=store, domains={"legal": "classification"},
                           tokens=TokenSet({h.TOKEN: ("legal",)}))
    service.start()
    with h.running(service) as url:
        assert url.startswith("https://")
        client_tls13 = ssl.create_default_context(cafile=str(cert))
        r = httpx.post(f"{url}/v1/legal/predict", json={"text": "court hearing"}, verify=client_tls13,
                       headers={"Authorization": f"Bearer {h.TOKEN}"})
        assert r.status_code == 200 and r.json()["model_version"] == "1.0"
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", verify=old)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url.replace("https", "http").replace("http:", "https:") + "/healthz")  # untrusted cert
