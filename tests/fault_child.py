"""Run one stage of a case in a child process so a test can SIGKILL it at a crash point
(`OFFBOARD_FAULT`, `OFFBOARD_FAULT_MODE=kill`): `python -m tests.fault_child offboard|destroy
TENANT CASE_ID`, with the settings in the environment."""

from __future__ import annotations

import sys
from pathlib import Path

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.datamap import RedisSystem, load_datamap
from offboarding.stores import LocalStore
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


def main(stage: str, tenant: str, case_id: str) -> None:
    settings = Settings()
    cache = load_datamap(settings.datamap).systems["cache"]
    assert isinstance(cache, RedisSystem)
    platform = Platform(
        dsn=settings.require_database(),
        settings=settings,
        files=LocalStore(Path(settings.store_url("files").removeprefix("file://"))),
        redis_url=cache.url,
    )
    case = CaseRef(tenant=tenant, case_id=case_id)
    if stage == "offboard":
        export_and_deliver(platform, case)
    else:
        destroy_everything(platform, case)


if __name__ == "__main__":
    main(*sys.argv[1:4])
