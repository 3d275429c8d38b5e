"""The project's packaging of files into a bundle (streamed and hashed in one pass):

python -m benchmarks.bundle_files SOURCE_DIR TARGET_DIR [--part-bytes N] [--workers W]

The pipeline knows each file's digest from the inventory; here the files come with none, so
each is read once more to get it before the bundle is written (the measure includes it).
With --part-bytes the bundle is split into parts of about that size, --workers written at once.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from exporters.bundle import plan_bundle, to_directory, write_parts
from offboarding.core.records import ExportedPart
from offboarding.core.signing import Signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--part-bytes", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    files = sorted(p for p in args.source.rglob("*") if p.is_file())
    parts = [
        ExportedPart(
            path=f"files/{p.relative_to(args.source)}",
            source=str(p),
            kind="file",
            size=p.stat().st_size,
        )
        for p in files
    ]

    def open_source(source: str) -> BinaryIO:
        return Path(source).open("rb")

    plan = plan_bundle(
        "bundle",
        tenant="bench",
        case_id="bench-run",
        snapshot_time=datetime.now(UTC),
        tables=[],
        parts=parts,
        open_source=open_source,
        signer=Signer.load_or_create(args.target / "keys"),
        part_bytes=args.part_bytes,
    )
    write_parts(plan.parts, to_directory(args.target, open_source), args.workers)


if __name__ == "__main__":
    main()
