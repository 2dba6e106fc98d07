"""Orchestration of a whole APT run: data, training loop, metrics."""
