"""Every PostgreSQL type the platform may use reaches the client without loss: either as the
exact Arrow type, or (marked `as_text` in the manifest) as PostgreSQL's own text form."""

from __future__ import annotations

import json
import math
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import Platform
from tests.helpers import export_and_deliver

ZOO = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE amount AS (currency text, value numeric(12, 2));
CREATE TABLE public.type_zoo (
    id integer PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    small smallint, big bigint, flag boolean, real_value real, double_value double precision,
    exact numeric(12, 4), wide numeric(50, 10), free numeric, money_value money,
    fixed char(3), bounded varchar(10), body text,
    day date, clock time, clock_tz timetz, moment timestamp, instant timestamptz,
    span interval, feeling mood, ident uuid, address inet, network cidr,
    seats int4range, period tstzrange, doc jsonb, raw_doc json, blob bytea,
    words text[], numbers integer[], grid integer[], amounts amount[], markup xml, bits varbit
);
INSERT INTO public.type_zoo VALUES
 (1, 'acme', -32768, 9223372036854775807, true, 1.5, 'NaN', 12345678.1234,
  '1234567890123456789012345678901234567890.0123456789', '3.14159265358979323846264338327950288',
  '$1,234.56', 'ab', 'déjà vu', E'line\\nbreak\\ttab "quoted" \\\\ back',
  '2024-02-29', '23:59:59.999999', '12:00+05:30', '2024-01-01 00:00:00.000001',
  '2024-06-30 23:59:59.123456+02', '1 year 2 months 3 days 04:05:06.789', 'happy',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '[1,10)',
  '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '{"a": [1, 2.5, null], "é": {"b": true}}',
  '{"keep":  "spacing"}', '\\x00ff10', '{"a","b c",NULL}', '{1,NULL,3}', '{{1,2},{3,4}}',
  ARRAY[ROW('EUR', 10.5)::amount, ROW('USD', NULL)::amount], '<a>x</a>', B'1011'),
 (2, 'acme', NULL, NULL, NULL, '-Infinity', 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, '',
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, '\\x',
  '{}', '{}', NULL, '{}', NULL, NULL),
 (3, 'acme-corp', 1, 1, false, 0, 0, 0, 0, 0, 0, 'x', 'x', 'not acme', '2000-01-01', NULL,
  NULL, NULL, NULL, NULL, 'sad', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL);
"""


@pytest.fixture
def exported(platform: Platform, tmp_path: Path) -> Path:
    platform.query(ZOO)
    _, _, bundle = export_and_deliver(platform, platform.case("acme"))
    target = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(target)], check=True)
    return target


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    return bool(got == want)


def test_every_type_round_trips_exactly(platform: Platform, exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    table = next(t for t in manifest["tables"] if t["name"] == "public.type_zoo")
    columns = {c["name"]: c for c in table["columns"]}
    parquet = f"{exported}/tables/public.type_zoo/part-00000.parquet"
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    duck = reader.execute(f"SELECT * FROM '{parquet}' ORDER BY id")
    names = [d[0] for d in duck.description]
    exported_rows = [dict(zip(names, r, strict=True)) for r in duck.fetchall()]
    arrow_rows = pq.read_table(parquet).to_pylist()  # for types DuckDB cannot hold (decimal256)
    assert [r["id"] for r in exported_rows] == [1, 2]  # acme's rows, not acme-corp's

    for name, column in columns.items():
        if column["as_text"] or column["pg_type"] in ("json", "jsonb"):
            source = platform.query(
                f"SELECT {name}::text FROM type_zoo WHERE tenant_id = 'acme' ORDER BY id"
            )
            for got, (want,) in zip(exported_rows, source, strict=True):
                if column["pg_type"] == "json":
                    assert got[name] == want, name  # json keeps the client's exact text
                elif column["pg_type"] == "jsonb":
                    assert (json.loads(got[name]) if got[name] else None) == (
                        json.loads(want) if want else None
                    ), name
                else:
                    assert got[name] == want, name
            continue
        source = platform.query(f"SELECT {name} FROM type_zoo WHERE tenant_id = 'acme' ORDER BY id")
        rows = arrow_rows if name == "wide" else exported_rows
        for got, (want,) in zip(rows, source, strict=True):
            assert _same(got[name], want), (name, got[name], want)

    assert not columns["exact"]["as_text"] and columns["exact"]["arrow_type"] == "decimal128(12, 4)"
    assert columns["wide"]["arrow_type"] == "decimal256(50, 10)"
    assert arrow_rows[0]["wide"] == Decimal("1234567890123456789012345678901234567890.0123456789")
    for name in ("free", "span", "feeling", "address", "seats", "grid", "amounts", "clock_tz"):
        assert columns[name]["as_text"], name
    for name in ("ident", "doc", "words", "numbers", "instant", "blob"):
        assert not columns[name]["as_text"], name
