"""The production NATS configuration is one nats-server accepts: a TLS cluster of three with
every service's user, syncing every write to disk."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from saas.devstack.servers.base import venv_binary

CONF = Path(__file__).resolve().parents[2] / "infra" / "nats" / "nats.conf"


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats-0.nats")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_nats_server_accepts_the_production_configuration(tmp_path):
    auth = (CONF.parent / "auth.conf").read_text()
    variables = set(re.findall(r"\$([A-Z_]+_NATS_PASSWORD)", auth))
    assert {"IDENTITY_NATS_PASSWORD", "GATEWAY_NATS_PASSWORD", "OPS_NATS_PASSWORD"} <= variables
    cert, key = throwaway_certificate(tmp_path)
    env = {
        **os.environ,
        **{v: "$2a$11$" + "x" * 53 for v in variables},
        "NATS_SERVER_NAME": "nats-0",
        "NATS_TLS_CERT": str(cert),
        "NATS_TLS_KEY": str(key),
        "NATS_TLS_CA": str(cert),
    }
    result = subprocess.run(
        [str(venv_binary("nats-server")), "-c", str(CONF), "-t"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_production_configuration_syncs_every_write_and_clusters():
    text = CONF.read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.M)
    assert len(re.findall(r"nats-route://", text)) == 3
