"""Quorum store package."""
