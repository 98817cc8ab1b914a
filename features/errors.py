"""Errors shared by the store and its compacted layer (kept apart so neither module imports the other for them)."""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(RuntimeError):
    """The store on disk cannot be used as asked (wrong version, missing output, held lock)."""
