"""Stage: the platform's daily backups, per tenant, encrypted with the tenant's own data key and
written to every backup location (clause 2.3.8); restore checks. `backup.py`."""
