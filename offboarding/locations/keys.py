"""The tenant's data key (which seals its backups): destroyed last among the copies, as the
cryptographic erase (NIST SP 800-88 "purge") of anything encrypted with it that deletion could
not reach. Verified by the key's state and by the canary: a ciphertext made with the key at its
creation, which must no longer decrypt."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from offboarding.core.canonical import compact_json
from offboarding.core.config import Settings
from offboarding.core.records import CaseRef, LocationInventory
from offboarding.keys.keyring import Keyring, open_keyring
from offboarding.locations.base import (
    CopiesOnly,
    LocationFacts,
    Remaining,
    Removal,
)

__all__ = ["KeysLocation"]


class KeysLocation(CopiesOnly):
    name = "keys"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring: Keyring = open_keyring(settings)

    def describe(self) -> LocationFacts:
        delay = self.settings.keyring.destroy_delay
        return LocationFacts(
            media=f"keyring {self.settings.keyring.url}",
            method="purge",
            technique="cryptographic erase: destroy the tenant's AES-256 data key, so every "
            "backup sealed with it is unreadable wherever a copy may remain; no new key can be "
            "made for the tenant",
            verification_method="key state in the keyring, and an attempt to decrypt the key's "
            "canary",
            lingering=f"the key's destruction takes effect {delay} after it is scheduled"
            if delay
            else "",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        enabled = self.keyring.state(case.tenant).state == "enabled"
        return LocationInventory(location=self.name, items=int(enabled), bytes=0)

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        before = self.keyring.state(case.tenant)
        after = self.keyring.destroy(case.tenant)
        return Removal(
            items_before=int(before.state == "enabled"),
            bytes_before=0,
            items_removed=int(before.state == "enabled" and after.state == "destroyed"),
            technique=self.describe().technique,
            method="purge",
        )

    def verify(self, case: CaseRef) -> Remaining:
        state = self.keyring.state(case.tenant)
        canary = self.keyring.canary(case.tenant)
        usable = state.state == "enabled" or canary.decrypts
        canary_text = (
            ("canary still DECRYPTS" if canary.decrypts else "canary no longer decrypts")
            if canary.present
            else "no canary (no key was ever created for the tenant)"
        )
        pending = (
            state.effective_at
            if state.effective_at
            and state.destroyed_at
            and (state.effective_at > state.destroyed_at)
            else None
        )
        return Remaining(
            items=int(usable),
            verification=f"key {state.key_id or '(none)'}: {state.state}; {canary_text}",
            pending_until=pending,
            details={
                "key_id": state.key_id or "",
                "key_state": state.state,
                "destroyed_at": state.destroyed_at.isoformat() if state.destroyed_at else "",
                "effective_at": state.effective_at.isoformat() if state.effective_at else "",
                "canary": "absent" if not canary.present
                else ("decrypts" if canary.decrypts else "does not decrypt"),
            },
        )  # fmt: skip

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """Other tenants' keys must be untouched: their states, by tenant."""
        states = {
            tenant: {
                name: str(value) for name, value in self.keyring.state(tenant).__dict__.items()
            }
            for tenant in self.keyring.tenants()
            if tenant != case.tenant and tenant not in excluded
        }
        return hashlib.sha256(compact_json(states)).hexdigest()
