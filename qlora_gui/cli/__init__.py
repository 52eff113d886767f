"""`qlora-gui COMMAND`: the subcommands that run the core headless (entry.py sends the rest to the app).

Exit codes: 0 done, 1 training failed, 2 bad input, 130 stopped by Ctrl-C.
No traceback ever reaches the terminal: unexpected errors go to a log file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..core.errors import DataError, UserError
from ..core.model.demo_model import DemoModelSpec
from ..core.train.command_line import add_setting_flags, settings_from_flags
from .console import error

# The training settings that change what check-data reports, as `qlora-gui train` takes them.
CHECK_DATA_SETTINGS = ("max_seq_length", "mask_prompt", "batch_size", "valid_fraction", "seed")
SUBCOMMANDS = ("check-data", "train", "generate", "evaluate", "fuse", "export", "demo-model")


def _check_data_parser(sub) -> None:
    p = sub.add_parser(
        "check-data",
        help="check a dataset and print its report",
        description="Check a dataset (folder, .jsonl or .json) and print its report. "
        "Exit 0 when usable, 2 with a FILE:LINE: list when not.",
    )
    p.add_argument("path", help="a folder with train.jsonl (valid.jsonl, test.jsonl), or one .jsonl/.json file")
    p.add_argument("--model", help="model folder: lengths are counted in its tokens (characters otherwise)")
    add_setting_flags(p, CHECK_DATA_SETTINGS)
    p.add_argument(
        "--show",
        type=int,
        action="append",
        metavar="LINE",
        default=[],
        help="print the row on this line of its file as the model sees it (needs --model): trained "
        "tokens highlighted, masked ones grey, the truncation point marked; repeat for more rows",
    )


def run_check_data(args: argparse.Namespace) -> int:
    from ..core.data.dataset import check_data
    from ..core.model.model_files import load_tokenizer, resolve_model_path
    from ..core.model.vision_model import is_vision_model, load_processor

    settings = settings_from_flags(args, CHECK_DATA_SETTINGS)
    tokenizer, vision = None, None
    if args.model:
        model = resolve_model_path(args.model, tokenizer_only=True)
        vision = is_vision_model(model)  # a vision-language model's tokenizer is its processor
        tokenizer = load_processor(model) if vision else load_tokenizer(model)
    result = check_data(args.path, tokenizer, vision=vision, **settings)
    print(result.report.to_text())
    if args.show and tokenizer is None:
        raise UserError("--show needs --model: the token view shows the model's own tokens")
    for line in args.show if result.report.usable else []:
        from ..core.data.token_view import token_view

        view = token_view(
            result.raw, line, tokenizer, max_seq_length=settings["max_seq_length"], mask_prompt=settings["mask_prompt"]
        )
        print()
        print(view.to_terminal(color=sys.stdout.isatty()))
    return 0 if result.report.usable else 2


def _demo_model_parser(sub) -> None:
    p = sub.add_parser(
        "demo-model",
        help="build the tiny random-weight demo model",
        description="Build a tiny Llama with random weights and a BPE tokenizer trained on the "
        "sample data, for trying the whole flow offline. It knows nothing until trained.",
    )
    spec = DemoModelSpec()
    p.add_argument("out", help="folder to create")
    p.add_argument("--hidden-size", type=int, default=spec.hidden_size, help=f"(default {spec.hidden_size})")
    p.add_argument("--num-layers", type=int, default=spec.num_layers, help=f"(default {spec.num_layers})")
    p.add_argument("--vocab-size", type=int, default=spec.vocab_size, help=f"(default {spec.vocab_size})")


def run_demo_model(args: argparse.Namespace) -> int:
    from ..core.model.demo_model import build_demo_model

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; give a new folder for the demo model")
    spec = DemoModelSpec(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        intermediate_size=2 * args.hidden_size,
    )
    build_demo_model(out, spec)
    print(f"Demo model (random weights) written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .adapter import add_adapter_parsers
    from .export import add_export_parser
    from .train import add_train_parser

    parser = argparse.ArgumentParser(
        prog="qlora-gui", description="QLoRA Studio: fine-tune local LLMs on MLX. With no command it opens the app."
    )
    parser.add_argument("--version", action="version", version=f"qlora-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _check_data_parser(sub)
    add_train_parser(sub)
    add_adapter_parsers(sub)
    add_export_parser(sub)
    _demo_model_parser(sub)
    return parser


def mlx_problem() -> str | None:
    """Why MLX cannot start here, in words a person can act on, or None."""
    try:
        import mlx.core  # noqa: F401
    except ImportError as e:
        return (
            f"MLX cannot start ({e}). On Linux MLX needs a compute backend: pip install 'qlora-gui[cpu]', "
            "or 'qlora-gui[cuda]' on a machine with an NVIDIA GPU and CUDA 13"
        )
    return None


def main(argv: list[str]) -> int:
    """Run one subcommand headless and return its exit code; every error becomes a message, never a traceback."""
    return report_errors(lambda: _run_command(argv))


def _run_command(argv: list[str]) -> int:
    problem = mlx_problem() if not set(argv) & {"-h", "--help", "--version"} else None
    if problem:
        error(problem)
        return 2
    args = build_parser().parse_args(argv)
    if args.command == "check-data":
        return run_check_data(args)
    if args.command == "demo-model":
        return run_demo_model(args)
    if args.command == "export":
        from .export import run_export

        return run_export(args)
    if args.command in ("generate", "evaluate", "fuse"):
        from .adapter import RUNNERS

        return RUNNERS[args.command](args)
    from .train import run_train

    return run_train(args)


def report_errors(run: Callable[[], int]) -> int:
    """Exit codes for what goes wrong: 2 bad input, 130 Ctrl-C, 1 anything else (the details go to the log)."""
    try:
        return run()
    except DataError as e:
        error(str(e), e.lines)
        return e.exit_code
    except UserError as e:
        error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback on the terminal; keep it in the log
        from ..core.app_log import log_exception

        log = log_exception(e)
        where = f" (details in {log})" if log else ""
        error(f"unexpected {type(e).__name__}: {e}{where}")
        return 1
