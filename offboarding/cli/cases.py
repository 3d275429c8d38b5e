"""`offboard` commands. Cases: the demo, a bundle's check, a tenant's inventory and export,
terminating a contract, new links, the deadlines and the case watch."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from offboarding.cli.persons import person_inventory
from offboarding.core.errors import IntegrityError

if TYPE_CHECKING:
    pass

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from offboarding.dev.demo.chat_run import run_chat_case
    from offboarding.dev.demo.run import run_demo

    def say(message: str) -> None:
        print(f"[demo] {message}", file=sys.stderr if args.json else sys.stdout, flush=True)

    result = run_demo(
        Path(args.home),
        destroy=not args.no_destroy,
        say=say,
        platform=args.platform,
        run_case=run_chat_case if args.platform == "chat" else None,
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        for label, value in (
            ("person requests", "; ".join(f"{k}: {v}" for k, v in result.person_requests.items())),
            ("case", result.case_id),
            ("client's download", result.bundle),
            ("link", result.link),
            ("public key", result.public_key),
            ("certificate", result.certificate),
            ("report", result.report),
            ("certificate verified", result.certificate_verified),
            ("delivery", result.delivery),
            ("timestamping", result.timestamping),
            ("tokens verified", result.timestamp_tokens_verified),
            ("backup locations", ", ".join(result.backup_locations)),
            (
                "neighbours' backups",
                "restore"
                if result.neighbours_backups_restore
                else result.neighbours_backups_restore,
            ),
            ("remaining", result.remaining),
            ("residue addendum", result.addendum),
            ("compacted at", result.physically_compacted_at),
            ("residue", "; ".join(f"{place}: {said}" for place, said in result.residue.items())),
            ("systems", result.systems),
            ("neighbours unchanged", result.neighbours_unchanged),
        ):
            print(f"{label:>21}: {value}")
        for error in result.errors:
            print(f"ERROR: {error}", file=sys.stderr)
    return 0 if result.ok else 1


def _verify(args: argparse.Namespace) -> int:
    from exporters.bundle import verify_bundle

    key = Path(args.public_key).read_bytes() if args.public_key else None
    try:
        report = verify_bundle([Path(b) for b in args.bundle], key)
    except IntegrityError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    total = len(report.manifest.parts)
    print(
        f"OK: {report.entries_checked} entries match the manifest, {report.rows} rows, "
        f"signed by {report.signature_key}"
        + ("" if total == 1 else f"; parts {report.parts_checked} of {total}")
    )
    if not report.complete:
        missing = sorted(set(range(1, total + 1)) - set(report.parts_checked))
        print(
            f"note: parts {missing} were not given; each part checked is intact, but only all "
            f"{total} together show the export is complete",
            file=sys.stderr,
        )
    if report.key_from_bundle:
        print(
            "note: checked against the key inside the bundle, which proves integrity but not "
            "origin; pass --public-key with the operator's published key",
            file=sys.stderr,
        )
    return 0


def _reissue(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.delivery.delivery import send_links
    from offboarding.scheduling.scheduling import case_from_id

    issued = send_links(Settings(), case_from_id(args.case), "reissue")
    print(f"new links sent to the contact of case {args.case}; valid until {issued.expires_at}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from flows.watch import case_watch

    counts = case_watch()
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _terminate(args: argparse.Namespace) -> int:
    from flows.adapter import CONTRACT_TERMINATED, emit_contract_terminated
    from offboarding.core.config import Settings, validate_tenant_id

    tenant = validate_tenant_id(args.tenant)
    settings = Settings()
    if (
        settings.platform.database_url
    ):  # where the registry is reachable, refuse an unknown tenant now
        from offboarding.registry import TenantRegistry

        TenantRegistry(settings).get(tenant)
    reason_ref = ""
    if args.reason:  # the reason may name people: Prefect's event gets a reference
        from offboarding.people import keep_statement

        reason_ref = keep_statement(settings, tenant, "termination", reason=args.reason)
    event_id = emit_contract_terminated(tenant, reason_ref)
    print(f"emitted {CONTRACT_TERMINATED} for {tenant} (event {event_id}); the offboard "
          "deployment's trigger opens the case")  # fmt: skip
    return 0


def _deadlines(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from offboarding.core.config import Settings
    from offboarding.scheduling.deadlines import case_deadlines

    cases = case_deadlines(Settings(), datetime.now(UTC))
    if args.json:
        print(json.dumps([c.__dict__ | {"flagged": c.flagged} for c in cases], default=str))
    else:
        for c in cases:
            deadline = f"{c.deadline:%Y-%m-%d %H:%M}" if c.deadline else "-"
            mark = "!" if c.flagged else " "
            print(f"{mark} {c.case_id:<28} {c.status:<15} deadline {deadline:<17} {c.note}")
    return 1 if any(c.status == "overdue" for c in cases) else 0


def _inventory(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.export.export import dry_run_inventory

    if args.person is not None:
        return person_inventory(args.tenant, args.person, args.json)
    inventory = dry_run_inventory(Settings(), args.tenant)
    unclassified = [t for loc in inventory.locations for t in loc.unclassified]
    if args.json:
        print(inventory.model_dump_json(indent=2))
        return 1 if unclassified else 0
    print(f"inventory of tenant {inventory.tenant} (dry run: nothing frozen or exported)")
    print(f"  {'table':<40} {'scope':<9} {'rows':>10} {'bytes':>12}")
    for table in inventory.tables:
        print(
            f"  {table.qualified:<40} {table.scope:<9} {table.rows:>10} {table.bytes_estimate:>12}"
        )
    referenced = sum(f.referenced for f in inventory.files)
    print(
        f"  files: {len(inventory.files)} objects, {inventory.total_file_bytes} bytes "
        f"({referenced} referenced by rows)"
    )
    for entry in inventory.left_out:
        print(f"  not exported: {entry.describe()}")
    for name in unclassified:
        print(f"  UNCLASSIFIED: {name} (a case would stop here; classify it in the settings)")
    for warning in (w for loc in inventory.locations for w in loc.warnings):
        print(f"  WARNING: {warning}")
    return 1 if unclassified else 0


@contextlib.contextmanager
def _parts_bar() -> Iterator[Callable[[int, int, int], None]]:
    """A progress bar of the export's parts on a terminal (rich); silent when stderr is not
    one (logs, CI), where the stage lines and the summary say enough."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("\\[export] table parts", markup=True),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("parts", total=None, rows=0)

        def advance(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, total=total, rows=rows)

        yield advance


def _export(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.export.export import export_copy

    def say(message: str) -> None:
        print(f"[export] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    with _parts_bar() as progress:
        result = export_copy(Settings(), args.tenant, Path(args.out), say=say, progress=progress)
    if args.json:
        print(
            json.dumps(
                {
                    "tenant": result.tenant,
                    "snapshot_time": result.snapshot_time.isoformat(),
                    "manifest_sha256": result.manifest_sha256,
                    "rows": result.rows,
                    "files": result.files,
                    "tables": result.tables,
                    "entries": result.entries,
                    "parts": [p.model_dump() for p in result.parts],
                },
                indent=2,
            )
        )
        return 0
    snapshot = f"{result.snapshot_time:%Y-%m-%d %H:%M:%S}"
    print(
        f"verified copy of tenant {result.tenant} (snapshot {snapshot} UTC): {result.rows:,} "
        f"rows in {result.tables} tables, {result.files:,} files, {result.entries:,} entries, "
        f"in {time.monotonic() - started:.1f} s"
    )
    for part in result.parts:
        print(f"  {part.sha256}  {part.path}  ({part.size:,} bytes)")
    print("check it with: offboard verify <every part> --public-key <the operator's key>")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's commands to the `offboard` parser."""
    demo = commands.add_parser("demo", help="run one whole case on the embedded default")
    demo.add_argument("--json", action="store_true", help="print one JSON object at the end")
    demo.add_argument(
        "--no-destroy", action="store_true", help="stop once delivered, waiting for the ack"
    )
    demo.add_argument("--home", default=".offboard/demo", help="working directory of the demo")
    demo.add_argument(
        "--platform",
        choices=("demo", "chat"),
        default="demo",
        help="demo: the collaboration suite (cache, backups, helpdesk); chat: a product "
        "without foreign keys, offboarded through its data map's declared references",
    )
    demo.set_defaults(run=_demo)

    verify = commands.add_parser("verify", help="check a bundle's signature and checksums")
    verify.add_argument("bundle", nargs="+", help="the .zip bundle, or all its parts")
    verify.add_argument("--public-key", help="the operator's published public key (PEM)")
    verify.set_defaults(run=_verify)

    inventory = commands.add_parser(
        "inventory", help="dry run: what a case would export for TENANT, and what blocks it"
    )
    inventory.add_argument("tenant")
    inventory.add_argument("--json", action="store_true", help="print the inventory as JSON")
    inventory.add_argument(
        "--person",
        metavar="REF",
        help="what a request about one person (their key in the data map's person table) "
        "would touch, instead of the whole tenant",
    )
    inventory.set_defaults(run=_inventory)

    export = commands.add_parser(
        "export",
        help="write a verified bundle of an active tenant to a folder (no freeze, no case)",
        description="A copy of a tenant's data at any time during the contract (portability, "
        "clause 2.2.7): the case's own export, packaging and verification, without freezing "
        "the tenant, delivering anything or opening a case.",
    )
    export.add_argument("tenant")
    export.add_argument("--out", required=True, help="folder for the bundle's ZIP part(s)")
    export.add_argument("--json", action="store_true", help="print the parts as JSON")
    export.set_defaults(run=_export)

    reissue = commands.add_parser("reissue", help="send the contact new download links")
    reissue.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    reissue.set_defaults(run=_reissue)

    terminate = commands.add_parser(
        "terminate", help="emit tenant.contract.terminated: the platform's signal to start a case"
    )
    terminate.add_argument("tenant")
    terminate.add_argument("--reason", default="", help="why the contract ended (recorded)")
    terminate.set_defaults(run=_terminate)

    deadlines = commands.add_parser("deadlines", help="every case against its 90-day deadline")
    deadlines.add_argument("--json", action="store_true")
    deadlines.set_defaults(run=_deadlines)

    watch = commands.add_parser("watch", help="follow up waiting cases once (reminders, expiry)")
    watch.set_defaults(run=_watch)
