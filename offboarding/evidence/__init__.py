"""What auditors check: verification of the whole archive and the certificate's HTML report
(`archive.py`), and incident records (`incidents.py`, clause 2.2.4)."""
