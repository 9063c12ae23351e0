"""Training entry points for the learned baselines (``gensemcom train ...``).

Each trainer module provides ``add_parser(subparsers)``; :func:`add_parsers` adds
them all to a ``train`` command's subparsers.
"""
from __future__ import annotations


def add_parsers(subparsers) -> None:
    """Add every trainer's subcommand (``deepjscc``, ...) to ``subparsers``."""
    from . import deepjscc, gened_sc, sc_sic, task_adaptive, tisc_embedded

    deepjscc.add_parser(subparsers)
    tisc_embedded.add_parser(subparsers)
    sc_sic.add_parser(subparsers)
    task_adaptive.add_parser(subparsers)
    gened_sc.add_parser(subparsers)


def add_trainer(subparsers, name: str, help: str, doc: str, add_arguments, run):
    """Add one trainer's subcommand: ``doc`` as its description, ``add_arguments(p)``
    for its options, ``run(args)`` as its action."""
    import argparse

    p = subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def trainer_main(module: str, doc: str, add_arguments, run, argv=None) -> int:
    """``python -m <module>``: parse ``argv`` with the trainer's options and run it
    (``args.argv`` keeps the command line for the weights' record)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = ["python", "-m", module] + list(sys.argv[1:] if argv is None else argv)
    return run(args)
