"""Quorum execution package."""
