"""One tenant's export as the offboard flow's export task runs it, in a process of its own so
its peak memory is the coordinator's alone (`benchmarks/distributed.py` measures it):

    python -m benchmarks.distributed_case TENANT

Settings come from the environment; with OFFBOARD_EXPORT_CLUSTER the parts run on that Dask
cluster, without it in this process. Prints the parts, rows and bytes written, as JSON.
"""

from __future__ import annotations

import json
import secrets
import sys

from flows import adapter
from flows.offboard import export_snapshot
from offboarding.core.records import CaseRef, ExportResult
from offboarding.export import export as stages


def main() -> None:
    tenant = sys.argv[1]
    settings = adapter.settings()
    case = CaseRef(tenant=tenant, case_id=f"{tenant}-{secrets.token_hex(6)}")
    inventory = stages.inventory_of(settings, case)
    staged = export_snapshot(case, stages.stage(settings, case, "inventory", inventory))
    exported = stages.unstage(staged, ExportResult)
    tables = [p for p in exported.parts if p.kind == "table"]
    print(
        json.dumps(
            {
                "parts": len(tables),
                "rows": sum(p.rows or 0 for p in tables),
                "bytes": sum(p.size for p in tables),
                "expected_rows": inventory.total_rows,
            }
        )
    )


if __name__ == "__main__":
    main()
