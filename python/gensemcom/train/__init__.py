"""Training entry points for the learned baselines (``gensemcom train ...``).

Each trainer module provides ``add_parser(subparsers)``; :func:`add_parsers` adds
them all to a ``train`` command's subparsers.
"""
from __future__ import annotations


def add_parsers(subparsers) -> None:
    """Add every trainer's subcommand (``deepjscc``, ...) to ``subparsers``."""
    from . import deepjscc, tisc_embedded

    deepjscc.add_parser(subparsers)
    tisc_embedded.add_parser(subparsers)
