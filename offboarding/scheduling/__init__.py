"""Stage: destruction in time: scheduling at acknowledgement, legal holds, postponing
(`scheduling.py`); every case against its 90-day deadline (`deadlines.py`)."""
