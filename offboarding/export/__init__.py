"""Stage: a case up to a verified bundle: freeze, inventory, export one consistent snapshot
(`export.py`), package the signed ZIP and verify it against the inventory (`packaging.py`)."""
