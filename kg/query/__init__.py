"""Operator queries: guards that keep query endpoints read-only and off files and network."""
