"""In what order rows go, and when destruction runs (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from offboarding.core.config import CONTRACT_DESTRUCTION_LIMIT
from offboarding.core.errors import DeadlineError, UnclassifiedDataError

__all__ = [
    "DESTRUCTION_MARGIN",
    "Schedule",
    "deletion_order",
    "destruction_schedule",
    "latest_destruction_start",
    "require_possible",
]


def deletion_order(tables: dict[str, set[str]]) -> list[str]:
    """Children before parents. `tables` maps each table to the tables it references.

    Self-references are ignored (rows of one table are removed in one statement per batch);
    a cycle between different tables has no safe order and is refused.
    """
    remaining = {name: {p for p in parents if p in tables and p != name}
                 for name, parents in tables.items()}  # fmt: skip
    order: list[str] = []
    while remaining:
        referenced = {p for parents in remaining.values() for p in parents}
        leaves = sorted(name for name in remaining if name not in referenced)
        if not leaves:
            raise UnclassifiedDataError(
                f"foreign keys form a cycle between {sorted(remaining)}: there is no order in "
                "which their rows can be deleted; make one of the keys DEFERRABLE"
            )
        order.extend(leaves)
        for leaf in leaves:
            del remaining[leaf]
    return order


@dataclass(frozen=True)
class Schedule:
    scheduled_for: datetime
    deadline: datetime


# Time kept between the latest start of destruction and the deadline, for a run that fires
# late or fails once and is retried.
DESTRUCTION_MARGIN = timedelta(days=2)


def destruction_schedule(
    acknowledged_at: datetime,
    grace: timedelta,
    limit: timedelta = CONTRACT_DESTRUCTION_LIMIT,
    lead_time: timedelta = timedelta(0),
    lead_reason: str = "soft delete, key destruction delay",
) -> Schedule:
    """When destruction runs and when it must be done: never later than ack + 90 days.

    `lead_time` is how long after destruction some copies linger (soft-deleted objects, a key
    whose destruction is scheduled): destruction starts early enough that they too are gone by
    the deadline, with a margin for a late or retried run."""
    if acknowledged_at.tzinfo is None:
        raise DeadlineError("acknowledgement time must carry a time zone")
    if grace < timedelta(0):
        raise DeadlineError(f"a grace period cannot be negative (got {grace})")
    if grace > limit:
        raise DeadlineError(
            f"destruction {grace.days} days after acknowledgement would break the contract's "
            f"{limit.days}-day limit (clause 2.3.2): choose at most {limit.days} days"
        )
    deadline = acknowledged_at + limit
    require_possible(lead_time, lead_reason, limit)
    latest_start = latest_destruction_start(deadline, lead_time)
    return Schedule(scheduled_for=min(acknowledged_at + grace, latest_start), deadline=deadline)


def require_possible(
    lead_time: timedelta, lead_reason: str, limit: timedelta = CONTRACT_DESTRUCTION_LIMIT
) -> None:
    """Refuse a configuration under which copies outlive the contract's limit whatever the
    schedule, naming the settings to change."""
    if lead_time + DESTRUCTION_MARGIN >= limit:
        raise DeadlineError(
            f"copies linger up to {lead_time.days} days after destruction ({lead_reason}): "
            f"with a {DESTRUCTION_MARGIN.days}-day margin that leaves no time within the "
            f"{limit.days}-day limit (clause 2.3.2). Shorten that retention or delay so that it "
            f"stays under {(limit - DESTRUCTION_MARGIN).days} days"
        )


def latest_destruction_start(deadline: datetime, lead_time: timedelta) -> datetime:
    """The last moment destruction may start and still have every copy gone by `deadline`,
    with a margin for a run that fires late or is retried once."""
    return deadline - lead_time - DESTRUCTION_MARGIN
