"""The contract's duties about data while it runs and after it ends, beside the case itself.

scope       where the data map says a person's data lives; what a request would touch
requests    requests about one person (clause 2.2.7) and their month
access      an access or portability answer: the person's bundle, delivered
erasure     an erasure by the data map's policy, with its signed certificate
retention   the client's retention periods (clause 2.2.2), run daily
contacts    a former client's contacts, three years after the end (clause 1.1.4)
rows        provable in-place deletes and updates (marks, locks, exact counts)
records     the signed records these leave in the audit archive
"""

from offboarding.persons.requests import (
    REQUEST_KINDS,
    PersonRequest,
    close_request,
    extend_request,
    forward_direct_request,
    forward_statement,
    get_request,
    list_requests,
    open_request,
    requests_due,
)
from offboarding.persons.scope import PersonFootprint, PersonTableCount, person_footprint

__all__ = [
    "REQUEST_KINDS",
    "PersonFootprint",
    "PersonRequest",
    "PersonTableCount",
    "close_request",
    "extend_request",
    "forward_direct_request",
    "forward_statement",
    "get_request",
    "list_requests",
    "open_request",
    "person_footprint",
    "requests_due",
]
