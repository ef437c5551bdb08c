"""Connectors: how commands reach a host (local subprocess, SSH)."""
