"""Stage: destroy every location, verify each independently, certify and archive
(`destruction.py`)."""
