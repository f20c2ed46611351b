"""Prefect flows of the seppo pipeline (they call the DVC stages)."""
