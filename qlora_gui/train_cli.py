"""`qlora-gui train`: the headless trainer, with mlx-lm's flag names where they overlap."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .core.distributed.event_lines import JsonLinePrinter
from .core.errors import ConfigError
from .core.runs.run_plan import new_run_folder, resumed_config
from .core.train.command_line import add_setting_flags, apply_flag_values, flag_values
from .core.train.config import SETTINGS, STEP_NOTE, TrainConfig, load_config_file
from .core.train.events import (
    CheckpointSaved,
    Event,
    Failed,
    Finished,
    GroupCompletions,
    PreferenceReport,
    RewardReport,
    RunStarted,
    SampleAnswers,
    StepReport,
    TrainWarning,
    ValidationResult,
)
from .machines_cli import (
    add_machine_flags,
    follow_stdin,
    machines_line,
    machines_of,
    rates_text,
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


def one_line(text: str, width: int = 200) -> str:
    """Text on one terminal line: line breaks shown as ⏎, cut at `width` characters."""
    flat = " ⏎ ".join(part.strip() for part in text.strip().splitlines())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class ConsoleReporter:
    """Prints the run: a progress bar on a terminal, a line per report everywhere."""

    def __init__(self) -> None:
        self.bar = None
        self.prompts_shown = False
        self.rewarded = False  # a GRPO run: its validation figure is the held-out mean reward

    def _print_samples(self, e: SampleAnswers) -> None:
        """The prompts and their references once, then each time the answers, a line each."""
        if not self.prompts_shown:
            for i, a in enumerate(e.answers, 1):
                self._print(f"sample [{i}] ({a['source']}) prompt: {one_line(a['prompt'])}")
                if a["reference"]:
                    self._print(f"sample [{i}] reference: {one_line(a['reference'])}")
            self.prompts_shown = True
        self._print(f"step {e.step:>6} | sample answers in {e.seconds:.1f}s (not counted in tok/s)")
        for i, a in enumerate(e.answers, 1):
            self._print(f"  [{i}] {one_line(a['answer'])}")

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            from tqdm import tqdm

            self.rewarded = e.config.get("train_mode") == "grpo"
            self._print(f"Run folder: {e.run_dir}")
            self._print(
                f"Trainable parameters: {e.trainable_params:,} of {e.total_params:,} "
                f"({100 * e.trainable_params / max(e.total_params, 1):.3f}%)"
            )
            self._print(
                f"Training rows: {e.train_rows}, validation rows: {e.valid_rows}; {e.steps_per_epoch} "
                f"steps per epoch, {e.total_steps} steps; padding {e.padding_share:.1%}; BLAS: {e.blas}"
                + (f"; quantized base: {e.quant_path}" if e.quant_path else "")
            )
            self._print(f"Device: {e.backend}; {e.loss_path}")
            if e.machines:
                self._print(str(machines_line(e)))
            self.bar = tqdm(
                total=e.total_steps,
                initial=e.start_step,
                unit="step",
                dynamic_ncols=True,
                disable=not sys.stderr.isatty(),
            )
        elif isinstance(e, StepReport):
            if self.bar is not None:
                self.bar.update(e.step - self.bar.n)
                self.bar.set_postfix(loss=f"{e.loss:.3f}", tok_s=f"{e.tokens_per_sec:.0f}")
            self._print(
                f"step {e.step:>6} | epoch {e.epoch:5.2f} | loss {e.loss:.4f} | lr {e.learning_rate:.2e} | "
                f"{e.tokens_per_sec:8.0f} tok/s | peak {e.mlx_peak_gb:.2f} GB | rss {e.rss_gb:.2f} GB | "
                f"ETA {e.eta:6.0f}s{rates_text(e)}"
            )
        elif isinstance(e, ValidationResult):
            best = " (best)" if e.is_best else ""
            self._print(
                f"step {e.step:>6} | {e.split} loss {e.val_loss:.4f}{best} | {e.val_tokens} tokens in {e.seconds:.1f}s"
            )
        elif isinstance(e, PreferenceReport):
            self._print(
                f"step {e.step:>6} | {e.split} pairs: chosen wins {e.reward_accuracy:.1%} | reward margin "
                f"{e.reward_margin:+.3f} | log p chosen {e.chosen_logp:.2f}, rejected {e.rejected_logp:.2f}"
            )
        elif isinstance(e, RewardReport):
            each = ", ".join(f"{k} {v:.3f}" for k, v in e.functions.items())
            kl = f" | KL {e.kl:.4f}" if e.kl is not None else ""
            self._print(
                f"step {e.step:>6} | {e.split} reward {e.reward_mean:.3f} ({each}) | spread {e.reward_spread:.3f} | "
                f"{e.zero_spread_share:.0%} groups all alike | {e.completion_length:.1f} tokens per answer{kl}"
            )
        elif isinstance(e, GroupCompletions):
            best = max(range(len(e.completions)), key=lambda i: e.completions[i]["reward"], default=None)
            if best is not None:
                c = e.completions[best]
                self._print(
                    f"  best answer ({c['reward']:.2f}) to {one_line(e.prompt, 60)}: {one_line(c['text'], 100)}"
                )
        elif isinstance(e, SampleAnswers):
            self._print_samples(e)
        elif isinstance(e, CheckpointSaved):
            self._print(f"step {e.step:>6} | saved {e.path} ({e.reason})")
        elif isinstance(e, TrainWarning):
            self._print(e.message if e.info else f"warning: {e.message}")
        elif isinstance(e, Finished):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            how = "stopped" if e.stopped else "finished"
            val = f", validation loss {e.val_loss:.4f}" if e.val_loss is not None else ""
            if e.val_loss is not None and self.rewarded:  # GRPO's validation "loss" is its negated mean reward
                val = f", held-out mean reward {-e.val_loss:.3f}"
            self._print(f"{how} at step {e.step} in {e.elapsed:.1f}s{val}. Adapter: {e.run_dir}")
        elif isinstance(e, Failed):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(f"error: {e.message}", file=sys.stderr)
            for line in e.problems:
                print(line, file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    from .core.train.trainer import Trainer

    cfg, notes = config_from_args(args)
    machines = machines_of(args)
    if args.preflight:
        return run_preflight(cfg, args.json)
    reporter = ConsoleReporter()
    for note in notes:
        print(f"warning: {note}", file=sys.stderr if args.events_json else sys.stdout)
    if machines is not None:  # mlx.launch as a child process; this one supervises the ranks
        return run_on_machines(args, cfg, machines, reporter)
    trainer = Trainer(cfg, JsonLinePrinter() if args.events_json else reporter)
    if args.control_stdin:
        follow_stdin(trainer)
    interrupted = []

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        trainer.stop()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = trainer.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    report_rank_failure(trainer.group.rank(), result)
    if isinstance(result, Failed):
        return result.exit_code
    return 130 if interrupted else 0


def run_preflight(cfg: TrainConfig, as_json: bool) -> int:
    import json

    from .core.train.preflight import preflight

    result = preflight(cfg, say=lambda what: print(f"preflight: {what}…", file=sys.stderr, flush=True))
    print(json.dumps(result.to_dict()) if as_json else result.to_text())
    return 0
