"""A local RFC 3161 timestamp authority for the demo and the tests: OpenSSL's own `ts -reply`
responder behind a small HTTP server on loopback.

    TimestampAuthority(home).start()   makes a root CA and a TSA certificate (extended key
                                       usage timeStamping, critical) on first start, then
                                       serves POST / (application/timestamp-query)
    .url, .ca_file                     what OFFBOARD_TIMESTAMP_URL and OFFBOARD_TIMESTAMP_CA take

A production installation names a real authority instead (a qualified TSA under eIDAS, or
any RFC 3161 service); nothing else changes.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from offboarding.core.errors import ServiceError
from offboarding.dev.services import ManagedProcess, free_port

__all__ = ["TimestampAuthority"]

POLICY = "1.3.6.1.4.1.99999.16.1"  # a private-arc policy: the demo's, not a real authority's

_CONFIG = """\
[ tsa ]
default_tsa = local_tsa

[ local_tsa ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
# No `certs`: the token carries the signer's certificate only. With the CA beside it, OpenSSL
# writes the certificates' SET unsorted, which strict DER readers (rfc3161-client) refuse.


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tenant-offboarding demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _key_usage(*, sign_certificates: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; the TSA signs tokens (and says it commits to them)."""
    return x509.KeyUsage(
        digital_signature=not sign_certificates, content_commitment=not sign_certificates,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=sign_certificates, crl_sign=sign_certificates, encipher_only=False,
        decipher_only=False,
    )  # fmt: skip


def make_authority(directory: Path) -> None:
    """A root CA and a TSA certificate it issued, with OpenSSL's responder configuration."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Demo Timestamp Root CA"))
        .issuer_name(_name("Demo Timestamp Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name("Demo Timestamp Authority"))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / "tsa.key", tsa_key)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (directory / "serial").write_text("01\n")
    (directory / "openssl.cnf").write_text(_CONFIG.format(dir=directory, policy=POLICY))


def serve(directory: Path, port: int) -> None:
    """Answer each POSTed query with `openssl ts -reply` (one at a time: it keeps a serial)."""
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock, tempfile.TemporaryDirectory() as work:
                (Path(work) / "query.tsq").write_bytes(query)
                answered = subprocess.run(
                    ["openssl", "ts", "-reply", "-config", str(directory / "openssl.cnf"),
                     "-queryfile", f"{work}/query.tsq", "-out", f"{work}/reply.tsr"],
                    capture_output=True, check=False,
                )  # fmt: skip
                reply = (Path(work) / "reply.tsr").read_bytes() if answered.returncode == 0 else b""
            if not reply:
                self.send_error(400, "openssl ts -reply refused the query")
                return
            self.send_response(200)
            self.send_header("content-type", "application/timestamp-reply")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"RFC 3161 timestamp authority (demo)\n")

        def log_message(self, format: str, *args: object) -> None:
            return

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@dataclass
class TimestampAuthority:
    home: Path
    port: int = 0
    _process: ManagedProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ca_file(self) -> Path:
        return self.home / "ca.pem"

    def start(self, timeout: float = 20.0) -> TimestampAuthority:
        if not (self.home / "openssl.cnf").exists():
            make_authority(self.home)
        self.port = self.port or free_port()
        self._process = ManagedProcess(
            "timestamp-authority",
            [sys.executable, "-m", "offboarding.dev.tsa", str(self.home), str(self.port)],
            dict(os.environ),
            self.home / "tsa.log",
        )
        self._process.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2):  # noqa: S310 (loopback)
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError(
                        f"the local timestamp authority did not start; see {self.home}/tsa.log"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
