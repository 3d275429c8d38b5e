"""`offboard verify`: an intact bundle passes; one flipped byte anywhere in any entry fails,
naming the entry."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from exporters.bundle import MANIFEST, SIGNATURE, plan_parts, safe_entry_paths
from offboarding.cli import main
from offboarding.core.errors import IntegrityError
from offboarding.core.signing import public_pem
from offboarding.export import export as stages
from offboarding.locations import scratch_dir
from tests.conftest import Platform
from tests.helpers import bundle_files, export_and_deliver

SIGNED = {MANIFEST, SIGNATURE}


@pytest.fixture
def bundle(platform: Platform, tmp_path: Path) -> tuple[Path, Path]:
    _, _, delivered = export_and_deliver(platform, platform.case("acme"))
    copy = tmp_path / "bundle.zip"
    shutil.copyfile(delivered, copy)
    return copy, platform.settings.keys_dir / "signing-ed25519.pub.pem"


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


def _flip_byte(source: Path, damaged: Path, info: zipfile.ZipInfo, mask: int = 0x01) -> None:
    """Copy `source` to `damaged` with one byte flipped in the middle of `info`'s data."""
    shutil.copyfile(source, damaged)
    offset = _data_offset(source, info) + info.compress_size // 2
    with damaged.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ mask]))


def test_an_intact_bundle_verifies(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = bundle
    assert main(["verify", str(path), "--public-key", str(key)]) == 0
    assert "OK:" in capsys.readouterr().out


def test_one_flipped_byte_in_any_entry_fails_naming_it(
    bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = bundle
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert len(infos) > 30
    for info in infos:
        damaged = tmp_path / "damaged.zip"
        _flip_byte(path, damaged, info)
        assert main(["verify", str(damaged), "--public-key", str(key)]) == 1, info.filename
        error = capsys.readouterr().err
        named = MANIFEST if info.filename in SIGNED else info.filename
        assert named in error, (info.filename, error)


def test_a_bundle_signed_by_another_key_fails(
    bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = bundle
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert main(["verify", str(path), "--public-key", str(other)]) == 1
    assert "signature does not match" in capsys.readouterr().err


def test_an_entry_added_after_signing_fails(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = bundle
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("files/extra.txt", b"slipped in later")
    assert main(["verify", str(path), "--public-key", str(key)]) == 1
    assert "files/extra.txt" in capsys.readouterr().err


def test_not_a_zip_is_a_clear_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    assert main(["verify", str(junk)]) == 1
    assert "not a readable ZIP" in capsys.readouterr().err


@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=30))
def test_safe_entry_paths_never_escape_and_never_collide(names: list[str]) -> None:
    paths = safe_entry_paths("files/", names)
    assert len(paths) == len(names)
    assert len({p.casefold() for p in paths}) == len(paths)
    for path in paths:
        assert path.startswith("files/")
        segments = path.split("/")
        assert all(s not in ("", ".", "..") for s in segments)
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in path)


def test_parts_are_planned_in_order_without_splitting_entries() -> None:
    assert plan_parts([5, 5, 5], None) == [1, 1, 1]
    assert plan_parts([5, 5, 5], 10) == [1, 1, 2]
    assert plan_parts([50, 1, 1], 10) == [1, 2, 2]  # too big for any part: a part of its own
    assert plan_parts([1, 50, 1], 10) == [1, 2, 3]


def test_a_split_bundle_verifies_part_by_part_and_as_a_whole(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = platform.settings.replace(bundle_part_bytes=20_000)
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    bundle = stages.package(
        settings, case, inventory, stages.export_snapshot(settings, case, inventory)
    )
    assert stages.verify_package(settings, case, bundle, inventory) == inventory.total_rows
    paths = bundle_files(bundle)
    assert len(paths) >= 3
    assert paths[0].name.endswith(f".part-001-of-{len(paths):03d}.zip")
    key = str(settings.keys_dir / "signing-ed25519.pub.pem")
    for path in paths:  # each part is self-describing
        with zipfile.ZipFile(path) as archive:
            assert {"README.txt", MANIFEST, SIGNATURE} <= set(archive.namelist())
        assert main(["verify", str(path), "--public-key", key]) == 0
        assert "only all" in capsys.readouterr().err
    assert main(["verify", *map(str, paths), "--public-key", key]) == 0
    assert "only all" not in capsys.readouterr().err

    damaged = tmp_path / paths[1].name
    with zipfile.ZipFile(paths[1]) as archive:
        victim = next(i for i in archive.infolist() if i.filename.startswith(("tables/", "files/")))
    _flip_byte(paths[1], damaged, victim, mask=0xFF)
    assert main(["verify", str(paths[0]), str(damaged), "--public-key", key]) == 1
    assert victim.filename in capsys.readouterr().err

    other_case = platform.case("acme")
    other = stages.package(
        settings, other_case, inventory, stages.export_snapshot(settings, other_case, inventory)
    )
    assert main(["verify", str(paths[0]), str(bundle_files(other)[1]), "--public-key", key]) == 1
    assert "different bundles" in capsys.readouterr().err


def test_parts_written_at_once_are_the_parts_written_one_at_a_time(platform: Platform) -> None:
    """The ZIP is deterministic and every part is planned and signed before any is written:
    four writers at once give byte for byte the parts one writer gives. A source changed since
    the export is refused by the writer that meets it, and the packaging stops."""
    settings = platform.settings.replace(bundle_part_bytes=20_000)
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    exported = stages.export_snapshot(settings, case, inventory)
    alone = settings.replace(export={"bundle_workers": 1})
    together = settings.replace(export={"bundle_workers": 4})
    one = stages.package(alone, case, inventory, exported, record=False)
    written_alone = [(p.size, p.sha256) for p in one.parts]
    many = stages.package(together, case, inventory, exported, record=False)
    assert len(many.parts) >= 3 and [(p.size, p.sha256) for p in many.parts] == written_alone
    assert stages.verify_package(together, case, many, inventory, record=False) > 0
    changed = max((p for p in exported.parts if p.kind == "table"), key=lambda p: p.path)
    source = scratch_dir(settings, case) / "export" / changed.source.removeprefix("scratch:")
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    source.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed since it was written") as stopped:
        stages.package(together, case, inventory, exported, record=False)
    assert changed.path not in str(stopped.value)  # an entry's name can name a person
    report = Path(str(stopped.value).split("details in ")[1].split(" on the worker")[0])
    assert changed.path in report.read_text()


def test_the_pipeline_keeps_entry_names_out_of_its_errors(
    platform: Platform, tmp_path: Path
) -> None:
    settings = platform.settings
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    bundle = stages.package(
        settings, case, inventory, stages.export_snapshot(settings, case, inventory)
    )
    part = bundle_files(bundle)[0]
    with zipfile.ZipFile(part) as archive:
        victim = next(i for i in archive.infolist() if i.filename.startswith("files/documents/"))
    damaged = tmp_path / "damaged.zip"
    _flip_byte(part, damaged, victim)
    shutil.copyfile(damaged, part)
    with pytest.raises(IntegrityError, match="failed its own verification") as raised:
        stages.verify_package(settings, case, bundle, inventory)
    assert victim.filename not in str(raised.value)  # a file name can name a person
    report = Path(str(raised.value).split("details in ")[1].split(" on the worker")[0])
    assert victim.filename in report.read_text()
