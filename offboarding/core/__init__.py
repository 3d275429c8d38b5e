"""The foundations every layer uses, and that import nothing else of the project: errors (one
hierarchy), settings, the typed records that cross stage boundaries, Ed25519 signing, private
files, and the named crash points of the fault-injection tests (inert unless switched on)."""
