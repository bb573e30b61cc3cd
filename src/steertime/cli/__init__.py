"""The `steertime` command line: a thin layer over the Python API, one module per capability.

Every module registers its commands on the one Typer `app` (cli/app.py); importing them
in pipeline order gives `steertime --help` that order: data in → train → stream →
evaluate → sim, then diagnostics.
"""

import importlib

from steertime.cli.app import app, main

for _module in (
    "data",
    "train",
    "ensemble",
    "stream",
    "evaluate",
    "sim",
    "duckietown",
    "diagnostics",
):
    importlib.import_module(f"steertime.cli.{_module}")

__all__ = ["app", "main"]
