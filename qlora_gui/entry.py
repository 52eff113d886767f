"""The `qlora-gui` command: a subcommand runs headless (cli.py); anything else opens the app (ui/app.py)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import time

from . import __version__
from .cli import SUBCOMMANDS, mlx_problem, report_errors

_STARTED = time.perf_counter()  # module import is close to process start; the smoke test reports from here
# FILE: each process of the command appends the modules it imported, at exit. The bundle test compares them with
# what the bundle carries (tests/test_bundle.py), so whatever the bundle carries and never imports is seen.
TRACE_IMPORTS_ENV = "QLORA_STUDIO_TRACE_IMPORTS"


def _trace_imports(path: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in sorted(sys.modules)))


def _app_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qlora-gui",
        description="Open QLoRA Studio. Commands: " + ", ".join(SUBCOMMANDS) + " (see `qlora-gui COMMAND --help`).",
    )
    p.add_argument("--version", action="version", version=f"qlora-gui {__version__}")
    p.add_argument("dataset", nargs="?", help="a dataset to open in the dataset panel")
    p.add_argument("--model", help="a model folder to select")
    p.add_argument("--smoke-test", action="store_true", help=argparse.SUPPRESS)  # open, report, close
    return p


def open_app(argv: list[str]) -> int:
    args = _app_parser().parse_args(argv)
    problem = mlx_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.smoke_test:  # MLX computes on the device it trains on, before the window opens
        from .core.compute_check import check_compute

        print(check_compute(), flush=True)
    from .ui.app import run_app

    return run_app(dataset=args.dataset, model=args.model, smoke_test=args.smoke_test, started=_STARTED)


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(TRACE_IMPORTS_ENV):
        atexit.register(_trace_imports, os.environ[TRACE_IMPORTS_ENV])
    if argv is None:  # a real process start (not a test calling main): pick up OpenBLAS on Linux
        from .core.blas import reexec_with_openblas

        reexec_with_openblas(sys.argv[1:], gui=not (sys.argv[1:] and sys.argv[1] in SUBCOMMANDS))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        from .cli import main as run_command

        return run_command(argv)
    return report_errors(lambda: open_app(argv))


if __name__ == "__main__":
    sys.exit(main())
