"""Shared library of the SaaS services."""

__version__ = "0.1.0"
