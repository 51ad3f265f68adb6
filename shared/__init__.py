"""Code shared by every CME Tracker service: event schemas, topics, settings, logging, storage, the local
stack."""
