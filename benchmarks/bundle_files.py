"""The project's packaging of files into a bundle (streamed and hashed in one pass):

python -m benchmarks.bundle_files SOURCE_DIR TARGET_DIR

The pipeline knows each file's digest from the inventory; here the files come with none, so
each is read once more to get it before the bundle is written (the measure includes it).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from exporters.bundle import directory_writer, package_bundle
from offboarding.core.records import ExportedPart
from offboarding.core.signing import Signer


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    files = sorted(p for p in source.rglob("*") if p.is_file())
    parts = [
        ExportedPart(
            path=f"files/{p.relative_to(source)}", source=str(p), kind="file", size=p.stat().st_size
        )
        for p in files
    ]
    package_bundle(
        "bundle",
        tenant="bench",
        case_id="bench-run",
        snapshot_time=datetime.now(UTC),
        tables=[],
        parts=parts,
        open_source=lambda s: Path(s).open("rb"),  # noqa: SIM115 (the caller closes it)
        signer=Signer.load_or_create(target / "keys"),
        write_part=directory_writer(target),
    )


if __name__ == "__main__":
    main()
