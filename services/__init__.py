"""The four CME Tracker services, each its own process."""
