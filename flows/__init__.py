"""Prefect flows: each reads as the steps of an offboarding case, in order."""
