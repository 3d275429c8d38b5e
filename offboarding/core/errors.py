"""Every error the pipeline raises on purpose, in one hierarchy.

    OffboardingError                 base: the case stops, the message says what to fix
    ├── ConfigurationError           a setting is missing or malformed
    ├── TenantError                  the tenant id is invalid, unknown, or in the wrong state
    │   ├── DuplicateCaseError       the tenant already has a case: no second one opens
    │   ├── LegalHoldError           the tenant is on legal hold: destruction refused
    │   ├── UnauthorisedDestructionError  the case's signed trail does not allow destruction
    │   ├── NotWaitingError          the case is not waiting for an acknowledgement
    │   └── AcknowledgementRejected  the orchestrator refused the acknowledgement's fields
    ├── UnclassifiedDataError        a table or object nobody classified (fail closed)
    │   └── SharedRowsError          rows belong to the tenant and another at once, unsettled
    ├── MissingDataError             a row references a file that is not there
    ├── IntegrityError               a bundle, signature, count or certificate does not check out
    ├── IsolationBreachError         another tenant's data where only this tenant's belongs
    ├── DestructionIncompleteError   a location still holds the tenant's data after destruction
    ├── DeadlineError                a schedule would break the 90-day destruction limit
    ├── KeyDestroyedError            the tenant's data key is gone (crypto-shredded)
    ├── ServiceError                 a service (database, Prefect server) failed to start or answer
    ├── TransientStoreError          a storage call may succeed if repeated (retried)
    └── StoreUnavailableError        a storage call kept failing after every retry

Messages name the tenant, the location and the fix, because the reader is an operator in the
middle of a case, not the author of the code.
"""

from __future__ import annotations

__all__ = [
    "AcknowledgementRejected",
    "ConfigurationError",
    "DeadlineError",
    "DestructionIncompleteError",
    "DuplicateCaseError",
    "IntegrityError",
    "IsolationBreachError",
    "KeyDestroyedError",
    "LegalHoldError",
    "MissingDataError",
    "NotWaitingError",
    "OffboardingError",
    "ServiceError",
    "SharedRowsError",
    "StoreUnavailableError",
    "TenantError",
    "TransientStoreError",
    "UnauthorisedDestructionError",
    "UnclassifiedDataError",
]


class OffboardingError(Exception):
    """Base of every deliberate failure of an offboarding case."""


class ConfigurationError(OffboardingError):
    """A setting is missing or malformed."""


class TenantError(OffboardingError):
    """The tenant id is invalid, unknown, or the tenant is in a state that forbids the step."""


class DuplicateCaseError(TenantError):
    """The tenant already has an offboarding case: a second one is not opened."""

    def __init__(self, message: str, existing_case: str) -> None:
        super().__init__(message)
        self.existing_case = existing_case


class LegalHoldError(TenantError):
    """The tenant is on legal hold, so its data must not be destroyed."""


class UnauthorisedDestructionError(TenantError):
    """The case's signed trail does not show it delivered, acknowledged and planned for
    destruction now (offboarding/destruction/warrant.py): nothing was touched. With
    `may_pass_later`, the trail may not name the run's plan yet (it is recorded right after the
    orchestrator creates the run): asking again a few seconds later can pass."""

    def __init__(self, message: str, *, may_pass_later: bool = False) -> None:
        super().__init__(message)
        self.may_pass_later = may_pass_later


class NotWaitingError(TenantError):
    """The case is not waiting for an acknowledgement (resumed already, done, or unknown)."""


class AcknowledgementRejected(TenantError):
    """The acknowledgement's fields were refused (the orchestrator validates them too)."""


class UnclassifiedDataError(OffboardingError):
    """A table or object is neither tenant-scoped, derived, global nor excluded."""


class SharedRowsError(UnclassifiedDataError):
    """Rows reference the tenant's rows and another tenant's at once, and the settings do not
    say whether to leave, delete or export them (OFFBOARD_SHARED_ROWS)."""


class MissingDataError(OffboardingError):
    """Data the inventory promised (a referenced file, a table) is not there."""


class IntegrityError(OffboardingError):
    """A bundle entry, signature, row count or certificate does not match its record."""


class IsolationBreachError(OffboardingError):
    """Another tenant's data where only this tenant's belongs: the case stops and an incident
    is recorded (clause 2.2.4). `facts` carries what the incident record needs."""

    def __init__(self, message: str, facts: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.facts = facts or {}


class DestructionIncompleteError(OffboardingError):
    """A location still holds some of the tenant's data after destruction."""


class DeadlineError(OffboardingError):
    """A requested schedule would complete destruction after the contractual deadline."""


class ServiceError(OffboardingError):
    """A service the pipeline needs (database, Prefect server, worker) did not start or answer."""


class KeyDestroyedError(OffboardingError):
    """The tenant's data key was destroyed (crypto-shredded): nothing can be encrypted or read."""


class TransientStoreError(OffboardingError):
    """A storage call failed in a way that may succeed if repeated (429, 503, a dropped link)."""


class StoreUnavailableError(OffboardingError):
    """A storage call kept failing after every retry."""
