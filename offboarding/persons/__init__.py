"""One person of a tenant: where the data map says a person's data lives, and what a request
about that person (clause 2.2.7: access, portability, erasure) would touch."""

from offboarding.persons.scope import PersonFootprint, PersonTableCount, person_footprint

__all__ = ["PersonFootprint", "PersonTableCount", "person_footprint"]
