"""Per-tenant data keys wrapped by a key-encryption key, their canaries and destruction
(crypto-shredding, `keyring.py`); streaming AES-256-GCM (`encryption.py`); bundles encrypted
to the client's own age recipient (`recipients.py`)."""
