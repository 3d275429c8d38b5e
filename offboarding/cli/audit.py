"""`offboard` commands. Auditors' checks of the archive: every signature and chain, and what was
recorded about one person."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from offboarding.core.errors import IntegrityError

if TYPE_CHECKING:
    from offboarding.core.signing import KeyList
    from offboarding.evidence.archive import ArchiveReport
    from offboarding.stores import ObjectStore

    pass

__all__ = ["register"]


def _keys_to_check(args: argparse.Namespace, store: ObjectStore) -> KeyList | None:
    """The keys given, else the list the archive publishes (said so: it proves integrity, not
    origin); None when neither says which."""
    from offboarding.core.signing import KeyList, load_public_key
    from offboarding.evidence.archive import latest_key_list

    if args.key_list:
        return KeyList.from_json(Path(args.key_list).read_bytes(), args.key_list)
    if args.public_key:
        return KeyList.of(load_public_key(Path(args.public_key).read_bytes()))
    published = latest_key_list(store)
    pems = sorted(o.key for o in store.list_objects("keys/") if o.key.endswith(".pem"))
    if published is not None:
        where, keys = published
    elif len(pems) == 1:
        where = pems[0]
        with store.open_read(pems[0]) as handle:
            keys = KeyList.of(load_public_key(handle.read()))
    else:
        return None
    print(
        f"note: checked against {where}, stored in the archive itself, which proves "
        "integrity but not origin; pass --key-list with the operator's published list",
        file=sys.stderr,
    )
    return keys


def _audit_verify(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.evidence.archive import verify_archive
    from offboarding.evidence.timestamps import load_roots
    from offboarding.stores import open_store

    url = args.archive or Settings().store_url("archive")
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    store = open_store(url)
    keys = _keys_to_check(args, store)
    if keys is None:
        print(
            "error: give --key-list (the operator's published list of signing keys) or "
            "--public-key",
            file=sys.stderr,
        )
        return 2
    ca = args.tsa_ca or Settings().evidence.timestamp_ca
    try:
        roots = load_roots(Path(ca)) if ca else None
        report = verify_archive(
            store, keys, tsa_roots=roots,
            require_timestamps=args.require_timestamps,
        )  # fmt: skip
    except IntegrityError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    _print_report(report)
    return 0


def _audit_certificate(args: argparse.Namespace) -> int:
    """One case's certificate (and its residue addendum, once the compaction has run), its
    signatures checked, written as the page a person reads and, with --pdf, as PDF."""
    import json

    from offboarding.core.config import Settings
    from offboarding.core.records import case_from_id
    from offboarding.evidence.readable import render_html, render_pdf
    from offboarding.stores import open_store

    case = case_from_id(args.case)
    url = args.archive or Settings().store_url("archive")
    store = open_store(url if "://" in url else Path(url).resolve().as_uri())
    keys = _keys_to_check(args, store)
    if keys is None:
        print("error: give --key-list (the operator's published list of signing keys) or "
              "--public-key", file=sys.stderr)  # fmt: skip
        return 2
    documents: dict[str, dict[str, object]] = {}
    for kind in ("json", "residue.json"):
        key = f"certificates/{case.tenant}/{case.case_id}.{kind}"
        if not store.exists(key):
            continue
        with store.open_read(key) as body, store.open_read(key + ".sig") as signature:
            data = body.read()
            document = json.loads(data)
            try:
                keys.verify(data, signature.read(), key, signing_key=document.get("signing_key"))
            except IntegrityError as error:
                print(f"FAILED: {error}", file=sys.stderr)
                return 1
        documents[kind] = document
        print(f"OK: {key} signed by {document.get('signing_key')}")
    if "json" not in documents:
        print(f"error: case {case.case_id} has no certificate in {url} (not destroyed yet, or "
              "another archive)", file=sys.stderr)  # fmt: skip
        return 2
    page = render_html(documents["json"], documents.get("residue.json"))
    for path, content in ((args.html, page.encode()), (args.pdf, None)):
        if path:
            Path(path).write_bytes(content if content is not None else render_pdf(page))
            print(f"wrote {path} ({Path(path).stat().st_size:,} bytes)")
    if not args.html and not args.pdf:
        sys.stdout.write(page)
    return 0


def _print_report(report: ArchiveReport) -> None:
    print(
        f"OK: {report.cases} case chain(s), {report.events} events, {report.certificates} "
        f"case certificate(s) and {report.reports} report(s) verify and agree with their chains"
    )
    if report.downloads:
        print(f"OK: {report.downloads} signed download receipt(s)")
    if report.records:
        kinds = ", ".join(f"{n} {kind}" for kind, n in report.records.items())
        print(
            f"OK: {sum(report.records.values())} tenant record(s) ({kinds}) verify; "
            f"{report.record_chains} tenant chain(s) of {report.record_entries} entries name "
            "each one, none missing or moved"
            + (
                f"; {report.unchained_records} written before chaining began"
                if report.unchained_records
                else ""
            )
        )
    print(
        f"OK: signed by {len(report.signing_keys)} key(s) of the list, each within its "
        f"validity: {', '.join(sorted(report.signing_keys)) or 'none'}"
    )
    if report.anchors:
        latest = max(a.at for a in report.anchors)
        print(
            f"OK: {len(report.anchors)} RFC 3161 timestamp token(s) verify against the "
            f"authority's root and match the chains and certificates they cover (latest "
            f"{latest:%Y-%m-%d %H:%M:%S} UTC): nothing they cover was rewritten since"
        )
    if report.tokens_unchecked:
        print(
            f"note: {report.tokens_unchecked} timestamp token(s) not checked: give --tsa-ca "
            "with the timestamp authority's root certificate",
            file=sys.stderr,
        )
    if report.unanchored:
        print(
            f"note: {len(report.unanchored)} certified case(s) have no timestamp (certified "
            "before OFFBOARD_TIMESTAMP_URL was set?): their record rests on the operator's key "
            "alone",
            file=sys.stderr,
        )


def _audit_person(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.delivery.receipts import downloads
    from offboarding.people import matches
    from offboarding.scheduling.scheduling import case_from_id
    from offboarding.trail import AuditTrail

    settings = Settings()
    case = case_from_id(args.case)
    recorded = [
        (f"event {e.seq:05d} ({e.kind}{', ' + name if name != 'by_pseudonym' else ''})", value)
        for e in AuditTrail.open(settings, case).recorded()
        for name in ("by_pseudonym", "reason_pseudonym")
        if isinstance(value := getattr(e.data, name, None), str)
    ] + [
        (f"download of {r.part} at {r.at:%Y-%m-%d %H:%M}", r.client)
        for r in downloads(settings, case)
    ]
    if not recorded:
        print(f"case {case.case_id} records no person")
        return 1
    if matches(settings, case, args.name, recorded[0][1]) is None:
        print(f"case {case.case_id}: its pseudonym key is gone (contact data forgotten after "
              "three years, clause 1.1.4): nobody can link a name to it any more")  # fmt: skip
        return 3
    found = [where for where, value in recorded if matches(settings, case, args.name, value)]
    for where in found:
        print(f"matches: {where}")
    if not found:
        print(f"no record of case {case.case_id} is this person's ({len(recorded)} checked)")
    return 0 if found else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's commands to the `offboard` parser."""
    audit = commands.add_parser("audit", help="auditors' checks of the archive")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify", help="check every signature, chain and certificate, offline"
    )
    audit_verify.add_argument("archive", nargs="?", help="archive directory or store URL")
    audit_verify.add_argument("--public-key", help="the operator's published public key (PEM)")
    audit_verify.add_argument(
        "--key-list",
        help="the operator's published list of signing keys (signing-keys.json): every "
        "signature must be by a listed key, within its validity period",
    )
    audit_verify.add_argument(
        "--tsa-ca",
        help="the timestamp authority's root certificate(s), PEM (default: "
        "OFFBOARD_TIMESTAMP_CA): every timestamp token is checked against it",
    )
    audit_verify.add_argument(
        "--require-timestamps",
        action="store_true",
        help="fail when a certified case has no timestamp token",
    )
    audit_verify.set_defaults(run=_audit_verify)
    audit_certificate = audit_commands.add_parser(
        "certificate",
        help="one case's certificate, its signatures checked, as the page a person reads "
        "(HTML, or PDF with --pdf); with its residue addendum once the compaction has run",
    )
    audit_certificate.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    audit_certificate.add_argument("archive", nargs="?", help="archive directory or store URL")
    audit_certificate.add_argument("--html", help="write the page here (default: stdout)")
    audit_certificate.add_argument("--pdf", help="write the page as PDF here")
    audit_certificate.add_argument("--public-key", help="the operator's public key (PEM)")
    audit_certificate.add_argument("--key-list", help="the operator's signing-keys.json")
    audit_certificate.set_defaults(run=_audit_certificate)
    audit_person = audit_commands.add_parser(
        "person",
        help="whether a name (or address) is one a case's pseudonyms stand for (the operator "
        "only, while the case's key exists)",
    )
    audit_person.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    audit_person.add_argument("name", help="the name or address to test")
    audit_person.set_defaults(run=_audit_person)
