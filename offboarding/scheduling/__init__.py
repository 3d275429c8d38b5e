"""Stage: destruction in time: scheduling at acknowledgement and postponing (`scheduling.py`),
legal holds (`holds.py`), what both read of a tenant's cases (`cases.py`), four-eyes approvals
(`approvals.py`); every case against its 90-day deadline (`deadlines.py`)."""
