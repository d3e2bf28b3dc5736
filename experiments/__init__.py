"""Sweep definitions (``*.toml``) and the task code they name.

Kept import-light: the worker imports this package before the task module, and the
orchestrator only locates task modules (it never imports them).
"""
