"""The case's record: typed audit events, the signed hash-chained trail that stores them, and
the case's state computed from it."""

from offboarding.trail.audit import GENESIS, AuditEvent, AuditTrail, case_prefix, verify_chain
from offboarding.trail.state import CaseState

__all__ = ["GENESIS", "AuditEvent", "AuditTrail", "CaseState", "case_prefix", "verify_chain"]
