"""`offboard demo --platform chat`: one whole case of team `acme` on the chat platform, the
product without a single foreign key (chat.py), through the same Prefect deployments as the
main demo. The bundle is compared with the product's own joins, the destruction is checked
by them, and the other teams' rows and files must be unchanged."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from offboarding.core.errors import OffboardingError
from offboarding.dev.demo import chat
from offboarding.dev.demo.run import (
    DEMO_TENANT,
    DemoEnvironment,
    DemoResult,
    _download,
    acknowledge_and_destroy,
    compact_now,
    read_certificate,
    start_case,
)

__all__ = ["run_chat_case"]


def _file_keys(dsn: str, team: str) -> set[str]:
    """The team's files and thumbnails, by the product's own join."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT f.path, f.thumbnailpath FROM chat.fileinfo f JOIN chat.channels c "
            "ON c.id = f.channelid WHERE c.teamid = %s",
            (team,),
        ).fetchall()
    return {str(key) for row in rows for key in row if key}


def _bundle_rows(paths: list[Path]) -> int:
    """Rows of the bundle's tables, as its manifest counts them."""
    with zipfile.ZipFile(paths[0]) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    return sum(int(t["rows"]) for t in manifest["tables"])


def run_chat_case(
    env: DemoEnvironment, result: DemoResult, *, destroy: bool, say: Callable[[str], None]
) -> None:
    from exporters.bundle import verify_bundle
    from offboarding.core.config import Settings
    from offboarding.core.signing import load_public_key
    from offboarding.evidence.archive import verify_archive
    from offboarding.stores import open_store

    settings = Settings()
    files = open_store(settings.store_url("files"))
    dsn = env.pg.dsn
    neighbours = [t for t in chat.CHAT_TEAMS if t != DEMO_TENANT]

    def fingerprint(team: str) -> tuple[str, list[bool]]:
        return chat.team_fingerprint(dsn, team), [files.exists(k) for k in _file_keys(dsn, team)]

    before = {t: fingerprint(t) for t in neighbours}
    keys = _file_keys(dsn, DEMO_TENANT)
    say(f"starting the offboarding case of team {DEMO_TENANT!r} (references declared, no key)")
    delivered = start_case(env, result, settings)
    case, downloads, signer = delivered.case, delivered.downloads, delivered.signer
    bundle_paths = [_download(url, env.home / "downloads") for url in downloads]
    result.bundle = str(bundle_paths[0])
    report = verify_bundle(bundle_paths, signer.public_pem)
    expected = chat.tenant_rows(dsn, DEMO_TENANT)
    exported = _bundle_rows(bundle_paths)
    if exported != sum(len(rows) for rows in expected.values()):
        result.errors.append(
            f"the bundle holds {exported} rows; the product's own joins find "
            f"{sum(len(rows) for rows in expected.values())}"
        )
    say(f"download verified: {report.entries_checked} entries, {report.rows} rows, "
        f"{len(keys)} files and thumbnails in the product's own layout")  # fmt: skip
    if not destroy:
        say("the case is waiting for acknowledgement (--no-destroy)")
        return

    acknowledge_and_destroy(env, delivered, "Acme DPO (chat demo)", say)
    document = read_certificate(settings, case, signer, result)
    compact_now(env, settings, case, result, say)  # the team's bytes out of the pages too
    archive = open_store(settings.store_url("archive"))
    public_key = load_public_key(signer.public_pem)
    try:
        verify_archive(archive, public_key)
        result.certificate_verified = True
    except OffboardingError as error:
        result.certificate_verified = False
        result.errors.append(f"audit verification failed: {error}")
    left = {t: len(rows) for t, rows in chat.tenant_rows(dsn, DEMO_TENANT).items() if rows}
    left.pop("chat.teams", None)  # the platform's record of the team stays, as in the demo
    left["files"] = sum(files.exists(k) for k in keys)
    result.remaining = {t: n for t, n in left.items() if n}
    if result.remaining:
        result.errors.append(f"data of {DEMO_TENANT} remains: {result.remaining}")
    result.neighbours_unchanged = before == {t: fingerprint(t) for t in neighbours}
    if not result.neighbours_unchanged:
        result.errors.append("other teams' data changed")
    say(f"certificate lists what it left out: {len(document.get('left_out', []))} table(s)")
