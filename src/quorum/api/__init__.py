"""Quorum api package."""
