"""Interfaces: the FastAPI app and the `autocnc` CLI."""
