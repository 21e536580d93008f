"""Quorum market package."""
