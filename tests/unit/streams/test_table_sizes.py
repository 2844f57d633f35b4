"""The table-size gauge counts keys of the active partitions' RocksDB databases only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import rocksdict

from streams.table_sizes import keys_on_active_partitions


def test_only_active_partitions_are_counted(tmp_path: Path) -> None:
    dbs = {}
    for partition, keys in ((0, 3), (1, 5), (2, 7)):
        db = rocksdict.Rdict(str(tmp_path / f"p{partition}"))
        for n in range(keys):
            db[f"k{n}".encode()] = b"v"
        db.flush()
        dbs[partition] = db
    table = SimpleNamespace(data=SimpleNamespace(_dbs=dbs))
    try:
        assert keys_on_active_partitions(table, {0, 2}) == 10  # type: ignore[arg-type]
        assert keys_on_active_partitions(table, set()) == 0  # type: ignore[arg-type]
    finally:
        for db in dbs.values():
            db.close()
