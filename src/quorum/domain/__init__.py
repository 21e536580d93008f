"""Quorum domain package."""
