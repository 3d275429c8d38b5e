"""Stage: deliver the bundle to the tenant's region, send signed expiring links and reminders,
and follow up waiting cases (`delivery.py`); link signing (`links.py`); notices (`mail.py`)."""
