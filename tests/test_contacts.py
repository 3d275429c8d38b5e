"""A former client's contacts go three years after the termination, and not before: the
pipeline's statements, pseudonym keys, requests, notices and the registry's contact columns,
with a signed record, and the roles of the operator's other systems asked."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.core.signing import load_key_list
from offboarding.delivery.mail import read_outbox
from offboarding.evidence.archive import verify_archive
from offboarding.people import keep_statement, pseudonym
from offboarding.persons import forward_direct_request
from offboarding.persons.contacts import attest_contacts_system, contacts_due, forget_contacts
from offboarding.persons.records import read_signed
from offboarding.registry import TenantRegistry
from offboarding.stores import open_store
from tests.conftest import Platform


def test_contacts_go_three_years_after_the_termination_and_not_before(
    platform: Platform,
) -> None:
    settings = platform.settings
    registry = TenantRegistry(settings)
    case = CaseRef(tenant="acme", case_id="acme-0123456789ab")
    keep_statement(settings, "acme", "acknowledgement", name="Camille Dupont", note="reçu")
    pseudonym(settings, case, "Camille Dupont")
    request = forward_direct_request(settings, "acme", "access", name="Zoë Requester",
                                     contact="zoe@example.org")  # fmt: skip
    keep_statement(settings, "acme-corp", "acknowledgement", name="Other Client")
    outbox = settings.root / "outbox"
    (outbox / "acme-0123456789ab-delivery-1.eml").write_text("To: dpo@acme.example\n")
    (outbox / "acme-corp-0123456789ab-delivery-1.eml").write_text("To: it@acme-corp.example\n")
    # Tenant `acme-0123456789ab` (a valid id) has cases that begin with acme's case id.
    neighbour = outbox / "acme-0123456789ab-fedcba987654-delivery-1.eml"
    neighbour.write_text("To: dpo@acme-numbered.example\n")
    registry.freeze("acme", case.case_id)
    platform.query(
        "UPDATE offboarding.ledger SET frozen_at = '2027-03-15 10:00+00' WHERE tenant = 'acme'"
    )
    assert registry.mark_destroyed("acme", datetime(2027, 6, 1, tzinfo=UTC)) == date(2030, 3, 15)

    # The day before: nothing is due, and asking is refused.
    assert contacts_due(settings, date(2030, 3, 14)) == []
    with pytest.raises(TenantError, match="kept until 2030-03-15"):
        forget_contacts(settings, "acme", today=date(2030, 3, 14))
    with pytest.raises(TenantError, match="is not destroyed"):
        forget_contacts(settings, "globex", today=date(2040, 1, 1))
    assert platform.query("SELECT contact_email FROM tenants WHERE id = 'acme'")[0][0]

    assert contacts_due(settings, date(2030, 3, 15)) == [("acme", date(2030, 3, 15))]
    forgotten = forget_contacts(settings, "acme", today=date(2030, 3, 15))
    assert (forgotten.statements, forgotten.case_keys, forgotten.requests) == (2, 1, 1)
    assert forgotten.registry_rows == 1 and forgotten.asked == ["crm"]
    # Gone from every place the pipeline kept them; the other client's untouched.
    for table in ("statements", "case_keys", "person_requests"):
        assert platform.query(
            f"SELECT count(*) FROM offboarding.{table} WHERE tenant = 'acme'"
        ) == [(0,)]
    assert platform.query("SELECT count(*) FROM offboarding.statements WHERE tenant = "
                          "'acme-corp'") == [(1,)]  # fmt: skip
    assert platform.query("SELECT contact_email, age_recipient FROM tenants WHERE id = 'acme'") == [
        (None, None)
    ]
    assert not (outbox / "acme-0123456789ab-delivery-1.eml").exists()
    assert not list(outbox.glob(f"request-{request.ref}*"))
    assert (outbox / "acme-corp-0123456789ab-delivery-1.eml").exists()
    assert neighbour.exists()  # forgetting acme used to delete this other tenant's notice
    asked = read_outbox(outbox / "contacts-acme-crm.eml")
    assert asked["To"] == "accounts@operator.example" and "acme" in asked.get_content()
    # Recorded, signed, counted; and done once.
    record = read_signed(settings, forgotten.record_key)
    assert record["statements"] == 2 and record["asked"][0]["role"] == "account manager"
    report = verify_archive(
        open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
    )
    assert report.contact_records == 1
    assert contacts_due(settings, date(2031, 1, 1)) == []
    confirmed = attest_contacts_system(settings, "acme", "crm", action="contacts deleted",
                                       evidence="CRM-881")  # fmt: skip
    assert read_signed(settings, confirmed)["role"] == "account manager"
