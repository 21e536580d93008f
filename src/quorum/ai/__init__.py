"""Quorum ai package."""
