"""Tidings: self-hosted transactional messaging."""

__version__ = "0.1.0"
