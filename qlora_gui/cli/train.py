"""`qlora-gui train`: the headless trainer, with mlx-lm's flag names where they overlap."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.config import SETTINGS, STEP_NOTE, TrainConfig, load_config_file
from ..core.distributed.event_lines import JsonLinePrinter
from ..core.errors import ConfigError
from ..core.events import Event, Failed, Finished, Recovered, RunStarted, SampleAnswers, StepReport, one_line
from ..core.runs.run_plan import new_run_folder, resumed_config
from ..core.train.command_line import add_setting_flags, apply_flag_values, flag_values
from .console import abort, ctrl_c_stops, error, note
from .machines import (
    add_machine_flags,
    follow_stdin,
    machines_of,
    report_rank_failure,
    run_on_machines,
    settings_config,
)


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a model headless",
        description="Fine-tune a local model with LoRA/QLoRA on MLX. " + STEP_NOTE,
        epilog="YAML-only keys: " + ", ".join(s.key for s in SETTINGS if not s.flag) + ".",
    )
    p.add_argument("-c", "--config", help="YAML file with mlx-lm lora keys and ours; flags override it")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="train nothing: measure peak memory and speed of two "
        "steps on the longest rows with these settings, the run's duration, and what fits when they "
        "do not",
    )
    p.add_argument("--json", action="store_true", help="with --preflight: print the result as JSON")
    add_setting_flags(p)
    add_machine_flags(p)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, list[str]]:
    """YAML (or the run's own config.yaml when resuming), then the flags on top; a rank gets all of them as JSON."""
    if args.settings_json:
        return settings_config(args.settings_json), []
    given = flag_values(args)
    if given.pop("resume", False):
        if "adapter_path" not in given:
            raise ConfigError("--resume needs --adapter-path RUN, the run folder to continue")
        cfg, notes = resumed_config(Path(str(given.pop("adapter_path"))), given)
        return cfg, notes
    cfg, notes = load_config_file(args.config) if args.config else (TrainConfig(), [])
    apply_flag_values(cfg, given)
    if not cfg.adapter_path:
        cfg.adapter_path = str(new_run_folder(Path("runs"), cfg.model))
    return cfg, notes


class ConsoleReporter:
    """Prints the run: a progress bar on a terminal, each event's own description everywhere."""

    def __init__(self) -> None:
        self.bar = None
        self.prompts_shown = False

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def _print_prompts(self, e: SampleAnswers) -> None:
        """The sample prompts and their references, once, before their first answers."""
        for i, a in enumerate(e.answers, 1):
            self._print(f"sample [{i}] ({a['source']}) prompt: {one_line(a['prompt'])}")
            if a["reference"]:
                self._print(f"sample [{i}] reference: {one_line(a['reference'])}")
        self.prompts_shown = True

    def __call__(self, e: Event) -> None:
        if isinstance(e, SampleAnswers) and not self.prompts_shown:
            self._print_prompts(e)
        if isinstance(e, (Finished, Failed)) and self.bar is not None:
            self.bar.close()
            self.bar = None
        if isinstance(e, Failed):
            error(e.message, e.problems)
            return
        if isinstance(e, StepReport) and self.bar is not None:
            self.bar.update(e.step - self.bar.n)
            self.bar.set_postfix(loss=f"{e.loss:.3f}", tok_s=f"{e.tokens_per_sec:.0f}")
        if not isinstance(e, Recovered):  # the warning that comes with it says why
            self._print(e.describe())
        if isinstance(e, RunStarted):
            from tqdm import tqdm

            self.bar = tqdm(
                total=e.total_steps,
                initial=e.start_step,
                unit="step",
                dynamic_ncols=True,
                disable=not sys.stderr.isatty(),
            )


def run_train(args: argparse.Namespace) -> int:
    from ..core.train.trainer import Trainer

    cfg, notes = config_from_args(args)
    machines = machines_of(args)
    if args.preflight:
        return run_preflight(cfg, args.json)
    reporter = ConsoleReporter()
    for line in notes:
        print(f"warning: {line}", file=sys.stderr if args.events_json else sys.stdout)
    if machines is not None:  # mlx.launch as a child process; this one supervises the ranks
        return run_on_machines(args, cfg, machines, reporter)
    trainer = Trainer(cfg, JsonLinePrinter() if args.events_json else reporter)
    if args.control_stdin:
        follow_stdin(trainer)
    says = "stopping after this step and saving a checkpoint (Ctrl-C again to abort)"
    with ctrl_c_stops(trainer.stop, abort, says) as interrupted:
        result = trainer.run()
    report_rank_failure(trainer.group.rank(), result)
    if isinstance(result, Failed):
        return result.exit_code
    return 130 if interrupted else 0


def run_preflight(cfg: TrainConfig, as_json: bool) -> int:
    import json

    from ..core.train.preflight import preflight

    result = preflight(cfg, say=lambda what: note(f"preflight: {what}…"))
    print(json.dumps(result.to_dict()) if as_json else result.to_text())
    return 0
