"""Quorum notify package."""
