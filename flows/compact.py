"""Compaction of what destructions left on disk (clause 2.3.2: every copy), weekly and on
demand: one run for every tenant destroyed since the last, each case closed with a signed
addendum to its certificate (offboarding/destruction/compaction.py)."""

from __future__ import annotations

from prefect import flow

from flows import adapter
from offboarding.core.records import CaseRef
from offboarding.destruction.compaction import compact_destroyed


@flow(name="compact", flow_run_name="compact")
def compact() -> dict[str, object]:
    """Rewrite the tables every case destroyed since the last run touched, each once; scan
    each case's canaries in their files; sign each case's addendum and destroy its canaries.
    A case whose pages still hold a canary is reported and tried again at the next run."""
    log = adapter.logger()
    run = compact_destroyed(adapter.settings(), say=log.info)
    log.info(run.summary())
    for case_id, addendum in run.closed.items():
        tenant = case_id.rpartition("-")[0]
        adapter.publish_table(
            CaseRef(tenant=tenant, case_id=case_id), "compaction",
            [{"run": run.run, "tables rewritten": sum(len(t) for t in run.tables.values()),
              "addendum": addendum}],
            f"Compaction of case {case_id}: the tables rewritten, the residue scanned",
        )  # fmt: skip
    if run.residue:
        log.warning("residue still on disk after the rewrite: %s", run.residue)
    return {
        "run": run.run,
        "tables": {name: len(tables) for name, tables in run.tables.items()},
        "closed": sorted(run.closed),
        "residue": dict(run.residue),
    }
