"""One person of a tenant: where the data map says a person's data lives, what a request
about that person (clause 2.2.7: access, portability, erasure) would touch, and the requests
themselves with their deadlines."""

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
