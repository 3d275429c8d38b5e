"""The platform's daily backups: every active tenant, from one snapshot each, encrypted with
the tenant's own key, written to every backup location (clause 2.3.8)."""

from __future__ import annotations

from prefect import flow, task

from flows import adapter
from offboarding.backup.backup import take_backup
from offboarding.registry import TenantRegistry


@task(name="backup", task_run_name="backup-{tenant}", retries=1, retry_delay_seconds=30)
def backup_tenant(tenant: str) -> dict[str, object]:
    result = take_backup(adapter.settings(), tenant)
    adapter.logger().info(
        "backup %s of %s: %d rows, %d files, %d part(s) in %d locations",
        result.backup_id, tenant, result.rows, result.files, result.parts, len(result.locations),
    )  # fmt: skip
    return {"backup_id": result.backup_id, "rows": result.rows, "files": result.files}


@flow(name="backup", flow_run_name="backup")
def backup(tenants: list[str] | None = None) -> dict[str, dict[str, object]]:
    """Back up the given tenants, or every active one; frozen and destroyed tenants never.

    Args:
        tenants: Tenant ids; empty for every active tenant.
    """
    chosen = tenants or TenantRegistry(adapter.settings()).tenants(status="active")
    futures = {tenant: backup_tenant.submit(tenant) for tenant in chosen}
    return {tenant: future.result() for tenant, future in futures.items()}
