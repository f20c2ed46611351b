"""Data: sources, ingest with quarantine, validation, latent caches."""
