"""Ingest: one module per source (topology, metrics, logs, runbooks, alerts) producing facts."""
