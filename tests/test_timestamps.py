"""Evidence anchored outside the operator: a certified case's chain head and certificate carry
RFC 3161 tokens from a real (local OpenSSL) timestamp authority; whoever holds the operator's
key can rewrite and re-sign a case's history, and the tokens still give it away."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from offboarding.cli import main
from offboarding.core.canonical import canonical_json, compact_json
from offboarding.core.errors import IntegrityError, ServiceError
from offboarding.core.signing import Signer, load_public_key
from offboarding.dev.services import free_port
from offboarding.dev.tsa import TimestampAuthority
from offboarding.evidence.archive import render_certificate_html, verify_archive
from offboarding.evidence.timestamps import load_roots, request_token
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


@pytest.fixture
def anchored(platform: Platform, timestamp_authority: TimestampAuthority) -> Platform:
    """A certified acme case, timestamped by the local authority."""
    settings = platform.settings.replace(
        evidence={"timestamp_url": timestamp_authority.url,
                  "timestamp_ca": timestamp_authority.ca_file},
    )  # fmt: skip
    anchored = Platform(platform.dsn, settings, platform.files, platform.redis_url)
    case = anchored.case("acme")
    export_and_deliver(anchored, case, settings)
    destroy_everything(anchored, case, settings)
    return anchored


def _root(platform: Platform) -> Path:
    return Path(platform.settings.store_url("archive").removeprefix("file://"))


def _verify(platform: Platform, roots: Path | None) -> Any:
    public_key = load_public_key(Signer.load_or_create(platform.settings.keys_dir).public_pem)
    store = open_store(platform.settings.store_url("archive"))
    return verify_archive(store, public_key, tsa_roots=load_roots(roots) if roots else None)


def _write(path: Path, data: bytes) -> None:
    path.chmod(0o600)  # the archive's files are read-only: an attacker with write access
    path.write_bytes(data)


def rewrite_history(platform: Platform, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """What the holder of the operator's key can do: edit one event, then re-link and re-sign
    every later one, and re-issue the certificate and its page to match."""
    signer = Signer.load_or_create(platform.settings.keys_dir)
    root = _root(platform)
    paths = sorted(root.glob("cases/acme/*/events/*.json"))
    documents = [json.loads(p.read_bytes()) for p in paths]
    change(documents[seq]["data"])
    previous = documents[seq]["prev"]
    certificate = b""
    for path, document in zip(paths[seq:], documents[seq:], strict=True):
        document["prev"] = previous
        if document["kind"] == "certificate":
            document["data"]["certificate"]["audit_chain_head"] = previous
            certificate = canonical_json(document["data"]["certificate"])
        if document["kind"] == "certified":
            document["data"]["certificate_sha256"] = hashlib.sha256(certificate).hexdigest()
            html = render_certificate_html(json.loads(certificate)).encode()
            document["data"]["report_sha256"] = hashlib.sha256(html).hexdigest()
        body = compact_json(document)
        _write(path, body)
        _write(Path(f"{path}.sig"), signer.sign(body))
        previous = hashlib.sha256(body).hexdigest()
    (certificate_path,) = root.glob("certificates/acme/*.json")
    _write(certificate_path, certificate)
    _write(Path(f"{certificate_path}.sig"), signer.sign(certificate))
    (page,) = root.glob("reports/acme/*.html")
    html = render_certificate_html(json.loads(certificate)).encode()
    _write(page, html)
    _write(Path(f"{page}.sig"), signer.sign(html))


def test_a_case_is_anchored_at_delivery_and_certification_and_openssl_verifies_the_tokens(
    anchored: Platform, timestamp_authority: TimestampAuthority
) -> None:
    root = _root(anchored)
    *heads, certificate_token = sorted(root.glob("timestamps/acme/*/*.tsr"))
    events = sorted(root.glob("cases/acme/*/events/*.json"))
    covered_events = [next(e for e in events if e.name.startswith(t.stem)) for t in heads]
    # The chain's head at delivery, at acknowledgement and at certification; the certificate.
    assert [json.loads(e.read_bytes())["kind"] for e in covered_events] == [
        "delivered", "acknowledged", "certified"
    ]  # fmt: skip
    assert certificate_token.name == "certificate.tsr"
    report = _verify(anchored, timestamp_authority.ca_file)
    assert sorted(a.covers for a in report.anchors)[0] == "certificate"
    assert len(report.anchors) == 4 and report.unanchored == []
    # The auditors' guide: the same check with OpenSSL alone.
    (certificate,) = root.glob("certificates/acme/*.json")
    pairs = [*zip(heads, covered_events, strict=True), (certificate_token, certificate)]
    for token, covered in pairs:
        digest = hashlib.sha256(covered.read_bytes()).hexdigest()
        checked = subprocess.run(
            ["openssl", "ts", "-verify", "-digest", digest, "-in", str(token),
             "-CAfile", str(timestamp_authority.ca_file)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr


def test_history_rewritten_and_re_signed_with_the_operators_key_is_caught_by_the_tokens(
    anchored: Platform, timestamp_authority: TimestampAuthority
) -> None:
    def move_region(data: dict[str, Any]) -> None:
        data["region"] = "us-east1"  # the tenant's data was "always" somewhere else

    rewrite_history(anchored, 0, move_region)
    assert _verify(anchored, None).certificates == 1  # every signature and link verifies
    with pytest.raises(IntegrityError, match="rewritten and re-signed after its timestamp"):
        _verify(anchored, timestamp_authority.ca_file)


def test_a_token_of_another_authority_or_a_deleted_token_does_not_hide_a_rewrite(
    anchored: Platform, timestamp_authority: TimestampAuthority, tmp_path: Path
) -> None:
    root = _root(anchored)
    (certificate,) = root.glob("certificates/acme/*.json")
    *heads, certificate_token = sorted(root.glob("timestamps/acme/*/*.tsr"))
    original = certificate_token.read_bytes()
    other = TimestampAuthority(tmp_path / "other-tsa").start()
    try:
        settings = anchored.settings.replace(
            evidence={"timestamp_url": other.url, "timestamp_ca": other.ca_file}
        )
        _write(certificate_token, request_token(settings, certificate.read_bytes()))
    finally:
        other.stop()
    with pytest.raises(IntegrityError, match="not a timestamp token of the trusted authority"):
        _verify(anchored, timestamp_authority.ca_file)
    _write(certificate_token, original)

    def move_region(data: dict[str, Any]) -> None:
        data["region"] = "us-east1"

    # The rewrite, with the chain's tokens removed: the certificate's token still tells.
    rewrite_history(anchored, 0, move_region)
    for head in heads:
        head.unlink()
    with pytest.raises(IntegrityError, match="certificate differs from the one the timestamp"):
        _verify(anchored, timestamp_authority.ca_file)
    # Both tokens removed: the case is reported as resting on the operator's key alone.
    certificate_token.unlink()
    assert _verify(anchored, timestamp_authority.ca_file).unanchored == [
        f"cases/acme/{certificate.stem}"
    ]


def test_audit_verify_reports_the_anchors_and_can_require_them(
    anchored: Platform,
    timestamp_authority: TimestampAuthority,
    platform: Platform,
    capsys: pytest.CaptureFixture[str],
) -> None:
    public_key = str(anchored.settings.keys_dir / "signing-ed25519.pub.pem")
    archive = str(_root(anchored))
    code = main(["audit", "verify", archive, "--public-key", public_key,
                 "--tsa-ca", str(timestamp_authority.ca_file), "--require-timestamps"])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 0 and "4 RFC 3161 timestamp token(s) verify" in output, output
    code = main(["audit", "verify", archive, "--public-key", public_key])
    assert code == 0 and "4 timestamp token(s) not checked" in capsys.readouterr().err

    # A case certified without an authority: it verifies, said to rest on the key alone,
    # and fails where timestamps are required.
    plain_archive = platform.settings.home.parent / "archive-plain"
    unanchored = platform.settings.replace(archive_url=plain_archive.as_uri())
    plain = Platform(platform.dsn, unanchored, platform.files, platform.redis_url)
    case = plain.case("globex")
    export_and_deliver(plain, case, unanchored)
    destroy_everything(plain, case, unanchored)
    archive = str(plain_archive)
    assert main(["audit", "verify", archive, "--public-key", public_key]) == 0
    assert "rests on the operator's key alone" in capsys.readouterr().err
    code = main(["audit", "verify", archive, "--public-key", public_key, "--require-timestamps"])
    assert code == 1 and "no timestamp token anchors it" in capsys.readouterr().err


def test_an_authority_that_does_not_answer_delays_only_the_certificates_anchor(
    platform: Platform, timestamp_authority: TimestampAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    """Delivery goes on (logged); certification fails, and its retry adds the tokens."""
    down = platform.settings.replace(
        evidence={"timestamp_url": f"http://127.0.0.1:{free_port()}/",
                  "timestamp_ca": timestamp_authority.ca_file},
    )  # fmt: skip
    case = platform.case("acme")
    export_and_deliver(platform, case, down)
    assert "not timestamped" in caplog.text
    with pytest.raises(ServiceError, match="did not answer"):
        destroy_everything(platform, case, down)
    assert not list(_root(platform).glob("timestamps/acme/*/*.tsr"))
    up = down.replace(evidence={"timestamp_url": timestamp_authority.url})
    destroy_everything(platform, case, up)  # the certify step, retried
    tokens = sorted(p.name for p in _root(platform).glob("timestamps/acme/*/*.tsr"))
    assert len(tokens) == 2 and tokens[-1] == "certificate.tsr"
    assert _verify(platform, timestamp_authority.ca_file).certificates == 1
