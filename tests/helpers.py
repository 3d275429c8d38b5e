"""Running the pipeline's stages directly (no orchestrator) for tests of what they produce."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from offboarding.core.config import Settings
from offboarding.core.records import BundleRef, CaseRef, Delivery, DestructionSchedule, Inventory
from offboarding.core.signing import Signer
from offboarding.delivery.delivery import deliver
from offboarding.destruction import attestation, destruction
from offboarding.export import export as stages
from offboarding.locations import destruction_order
from offboarding.people import keep_statement
from offboarding.runs import AcknowledgementInput, AttestationInput
from offboarding.scheduling.scheduling import schedule_destruction
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events
from tests.conftest import Platform

# What the demo's "support lead" confirms for the helpdesk (an attested system of its map).
ATTESTER = "Sam Support (test)"
ATTESTED_ACTION = "erased the organisation in the helpdesk admin console"


def attestation_for(settings: Settings, tenant: str) -> AttestationInput:
    """The support lead's confirmation: their name kept as a statement, the form its reference."""
    return AttestationInput(
        statement=keep_statement(settings, tenant, "attestation", name=ATTESTER),
        action=ATTESTED_ACTION,
        evidence="HELPDESK-DEL-0001",
    )


def bundle_files(bundle: BundleRef) -> list[Path]:
    """The bundle's parts as local files: in the (local) delivery store for a case's bundle,
    in scratch for a copy or a backup."""
    if not bundle.store_url:
        return [Path(p.path) for p in bundle.parts]
    root = Path(urlparse(bundle.store_url).path)
    return [root / p.path for p in bundle.parts]


def export_and_deliver(
    platform: Platform, case: CaseRef, settings: Settings | None = None
) -> tuple[Inventory, Delivery, Path]:
    """Freeze, inventory, export, package, verify and deliver; return the delivered bundle."""
    settings = settings or platform.settings
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    exported = stages.export_snapshot(settings, case, inventory)
    bundle = stages.package(settings, case, inventory, exported)
    stages.verify_package(settings, case, bundle, inventory)
    delivery = deliver(settings, case, bundle, flow_run_id=str(uuid.uuid4()))
    store_root = Path(open_store(delivery.store_url).url.removeprefix("file://"))
    return inventory, delivery, store_root / delivery.parts[0].key


class ScheduledRuns:
    """The orchestrator's destruction runs as scheduling sees them: created (one per
    idempotency key), their state, cancelled (the destroy flow itself is run through a real
    Prefect server in test_end_to_end)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[CaseRef, datetime, str]] = []
        self.states: dict[str, str] = {}
        self._by_key: dict[str, str] = {}

    def schedule_destruction(
        self, case: CaseRef, *, scheduled_for: datetime, idempotency_key: str
    ) -> str:
        if idempotency_key not in self._by_key:
            self._by_key[idempotency_key] = str(uuid.uuid4())
            self.scheduled.append((case, scheduled_for, idempotency_key))
            self.states[self._by_key[idempotency_key]] = "SCHEDULED"
        return self._by_key[idempotency_key]

    def state(self, run_id: str) -> str:
        return self.states.get(run_id, "UNKNOWN")

    def cancel(self, run_id: str, message: str) -> None:
        self.states[run_id] = "CANCELLED"


def acknowledge(
    settings: Settings, case: CaseRef, *, grace: timedelta = timedelta(0)
) -> DestructionSchedule | None:
    """The client's acknowledgement of a delivered case, through the real scheduling rule:
    destruction planned `grace` after it (at once by default), as the trail then shows."""
    state = AuditTrail.open(settings, case).state()
    if state.schedule is not None or state.destruction_held:
        return None  # acknowledged and planned already (a rerun after a crash gets here)
    quick = settings.model_copy(
        update={"destruction": settings.destruction.model_copy(update={"grace": grace})}
    )
    said = keep_statement(settings, case.tenant, "acknowledgement", name="Client DPO (test)")
    return schedule_destruction(quick, ScheduledRuns(), case, AcknowledgementInput(statement=said))


def destroy_everything(
    platform: Platform, case: CaseRef, settings: Settings | None = None
) -> destruction.ArchivedCertificate:
    """The destroy flow's steps, in its order, without the orchestrator; a delivered case is
    acknowledged first (destruction planned at once), as its trail must show."""
    settings = settings or platform.settings
    acknowledge(settings, case)
    warrant = destruction.check_warrant(settings, case)
    now = datetime.now(UTC)
    shared = destruction.check_isolation(settings, case)
    audit = settings.destruction.neighbours_audit
    excluded = destruction.tenants_in_offboarding(settings, case) if audit else []
    before = destruction.neighbours_digests(settings, case, excluded) if audit else None
    order = destruction_order(settings)
    removals = {n: destruction.destroy_location(settings, case, n) for n in order}
    remaining = {n: destruction.verify_location(settings, case, n) for n in order}
    after = destruction.neighbours_digests(settings, case, excluded) if audit else None
    for due in attestation.request_attestations(settings, case, now, warrant.deadline):
        attestation.attest(
            settings, case, due.system, attestation_for(settings, case.tenant), datetime.now(UTC)
        )
    return destruction.certify(
        settings, case, destruction.DestructionEvidence(
            started_at=now, removals=removals, remaining=remaining, shared_rows=shared,
            neighbours_before=before, neighbours_after=after, neighbours_excluded=excluded,
        ),
    )  # fmt: skip


def declare_shape(platform: Platform, **fields: str) -> None:
    """Declare fields of [systems.postgres] in the platform's data map (TOML values, written as
    they are), replacing a field it declares already."""
    path = platform.settings.datamap
    assert path is not None
    lines = path.read_text().splitlines()
    start = lines.index("[systems.postgres]")
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("[")), len(lines))
    section = [line for line in lines[start + 1 : end] if line.split(" = ", 1)[0] not in fields]
    section += [f"{name} = {value}" for name, value in fields.items()]
    path.write_text("\n".join([*lines[: start + 1], *section, *lines[end:]]) + "\n")


def with_small_parts(settings: Settings, split_rows: int, **export: int) -> Settings:
    """Parts far smaller than an operator may configure (at least 1,000 rows), so the demo's
    small tables take the large-table paths: model_copy skips validation on purpose."""
    small = settings.export.model_copy(
        update={"split_rows": split_rows, "parquet_row_group_rows": 1_000, **export}
    )
    return settings.model_copy(update={"export": small})


def record_plan(platform: Platform, tenant: str, deadline: datetime) -> CaseRef:
    """A case of `tenant` whose destruction is scheduled five days before `deadline`."""
    case = platform.case(tenant)
    trail = AuditTrail(platform.settings, case, Signer.load_or_create(platform.settings.keys_dir))
    trail.record(
        events.DestructionScheduled(
            flow_run_id="r",
            scheduled_for=deadline - timedelta(days=5),
            deadline=deadline,
            acknowledged_at=deadline - timedelta(days=90),
        )
    )
    return case
