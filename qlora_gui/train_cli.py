"""`qlora-gui train`: the headless trainer, with mlx-lm's flag names where they overlap."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .core.config import TrainConfig, config_from_dict, load_config_file
from .core.errors import ConfigError
from .core.events import (CheckpointSaved, Event, Failed, Finished, RunStarted, StepReport, TrainWarning,
                          ValidationResult)

STEP_NOTE = ("A step is one optimizer update. mlx-lm counts micro-batches: with --grad-accumulation-steps N, "
             "our --iters K equals mlx-lm's --iters K*N.")

def _key_list(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


# flag -> (config key, type, help)
FLAGS: dict[str, tuple[str, type, str]] = {
    "--model": ("model", str, "model folder (Hugging Face layout) or an already-downloaded repo id"),
    "--data": ("data", str, "folder with train/valid/test .jsonl, or one .jsonl/.json file"),
    "--adapter-path": ("adapter_path", str, "run folder to create (default: runs/DATE-TIME)"),
    "--fine-tune-type": ("fine_tune_type", str, "lora (default) or dora"),
    "--num-layers": ("num_layers", int, "adapt the last N layers; -1 for all (default 16)"),
    "--lora-rank": ("lora_parameters.rank", int, "adapter rank (default 8)"),
    "--lora-scale": ("lora_parameters.scale", float, "adapter scale, mlx-lm's 'scale' (default 20)"),
    "--lora-alpha": ("lora_parameters.alpha", float, "PEFT-style alpha; stored as scale = alpha / rank"),
    "--lora-dropout": ("lora_parameters.dropout", float, "adapter dropout (default 0)"),
    "--lora-keys": ("lora_parameters.keys", _key_list,
                    "layers to adapt, comma-separated (e.g. self_attn.q_proj,self_attn.v_proj); default: all linear"),
    "--quantize-bits": ("quantize_bits", int, "quantize a full-precision base to 4 or 8 bits on load"),
    "--quantize-group-size": ("quantize_group_size", int, "quantization group size: 32, 64 (default) or 128"),
    "--batch-size": ("batch_size", int, "rows per micro-batch (default 4)"),
    "--grad-accumulation-steps": ("grad_accumulation_steps", int, "micro-batches per step (default 1)"),
    "--epochs": ("epochs", int, "passes over the training data (default 1)"),
    "--iters": ("iters", int, "a budget of steps instead of epochs. " + STEP_NOTE),
    "--learning-rate": ("learning_rate", float, "peak learning rate (default 1e-5)"),
    "--optimizer": ("optimizer", str, "adamw (default), adam or sgd"),
    "--warmup-steps": ("warmup_steps", int, "linear warmup steps before cosine decay (default 5%% of steps)"),
    "--grad-clip": ("grad_clip", float, "clip gradients to this global norm; 0 is off (default 1.0)"),
    "--max-seq-length": ("max_seq_length", int, "truncate rows to this many tokens (default 2048)"),
    "--valid-fraction": ("valid_fraction", float, "share held out as validation for one file (default 0.1)"),
    "--steps-per-report": ("steps_per_report", int, "report loss every N steps (default 10)"),
    "--steps-per-eval": ("steps_per_eval", int, "validate every N steps (default 200)"),
    "--val-batches": ("val_batches", int, "validation batches; -1 for all (default 25)"),
    "--save-every": ("save_every", int, "checkpoint every N steps (default 100)"),
    "--keep-last": ("keep_last", int, "checkpoints kept besides the best (default 3)"),
    "--test-batches": ("test_batches", int, "test batches with --test; -1 for all (default)"),
    "--seed": ("seed", int, "seed for the split, the data order, adapter init and dropout (default 0)"),
    "--memory-limit-gb": ("memory_limit_gb", float, "cap MLX's memory (mx.set_memory_limit)"),
}
SWITCHES = {
    "--mask-prompt": ("mask_prompt", "train on completions only (prompt/completion and chat data)"),
    "--test": ("test", "evaluate on the test split at the end"),
    "--grad-checkpoint": ("grad_checkpoint", "recompute each block's activations in the backward instead of "
                          "keeping them: much less memory, about a third more time per step"),
}
# Switches that turn a default-on setting off.
OFF_SWITCHES = {
    "--no-fast-quant": ("fast_quant", "on the CPU backend, keep MLX's quantized kernels for the frozen base "
                        "instead of dequantize + BLAS matmul (for comparison)"),
}


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model headless",
                       description="Fine-tune a local model with LoRA/QLoRA on MLX. " + STEP_NOTE,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-c", "--config", help="YAML file with mlx-lm lora keys and ours; flags override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --adapter-path from its latest checkpoint")
    for flag, (_, typ, text) in FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=text)
    for flag, (_, text) in {**SWITCHES, **OFF_SWITCHES}.items():
        p.add_argument(flag, action="store_true", default=None, help=text)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, list[str]]:
    """YAML (or the run's own config.yaml when resuming), then the flags on top."""
    notes: list[str] = []
    given: dict[str, object] = {}
    for flag, (key, _, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            given[key] = value
    for flag, (key, _) in SWITCHES.items():
        if getattr(args, flag[2:].replace("-", "_")):
            given[key] = True
    for flag, (key, _) in OFF_SWITCHES.items():
        if getattr(args, flag[2:].replace("-", "_")):
            given[key] = False

    if args.resume:
        if "adapter_path" not in given:
            raise ConfigError("--resume needs --adapter-path RUN, the run folder to continue")
        saved = Path(str(given["adapter_path"])) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{saved}: not found; --adapter-path must be a run folder made by `qlora-gui train`")
        cfg, notes = load_config_file(saved)
        for key, value in given.items():
            current = cfg.lora_parameters.get(key.split(".")[1]) if key.startswith("lora_") else getattr(cfg, key)
            if key != "adapter_path" and current != value:
                raise ConfigError(f"--resume continues the run with its own settings, but {key}={value!r} differs "
                                  f"from the run's {current!r}; drop that flag or start a new run")
        cfg.resume = True
        return cfg, notes

    cfg, notes = load_config_file(args.config) if args.config else (TrainConfig(), [])
    lora = {k.split(".")[1]: v for k, v in given.items() if k.startswith("lora_parameters.")}
    plain = {k: v for k, v in given.items() if not k.startswith("lora_parameters.")}
    cfg, more = config_from_dict(plain, cfg)
    notes += more
    if lora:
        merged = dict(cfg.lora_parameters)
        if "alpha" in lora:
            merged["scale"] = lora.pop("alpha") / int(lora.get("rank", merged.get("rank", 8)))
        merged.update(lora)
        cfg.lora_parameters = merged
    if not cfg.adapter_path:
        cfg.adapter_path = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    return cfg, notes


def command_line(cfg: TrainConfig) -> str:
    """The `qlora-gui train` command for these settings: flags only where they differ from the defaults."""
    import shlex

    default = TrainConfig()
    parts = ["qlora-gui", "train"]
    for flag, (key, _, _) in FLAGS.items():
        if key.startswith("lora_parameters."):
            sub = key.split(".")[1]
            if sub == "alpha":
                continue
            value, base = cfg.lora_parameters.get(sub), default.lora_parameters.get(sub)
        else:
            value, base = getattr(cfg, key), getattr(default, key)
        if value is not None and value != base:
            parts += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    for flag, (key, _) in SWITCHES.items():
        if getattr(cfg, key):
            parts.append(flag)
    for flag, (key, _) in OFF_SWITCHES.items():
        if not getattr(cfg, key):
            parts.append(flag)
    return shlex.join(parts)


class ConsoleReporter:
    """Prints the run: a progress bar on a terminal, a line per report everywhere."""

    def __init__(self) -> None:
        self.bar = None

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            from tqdm import tqdm

            self._print(f"Run folder: {e.run_dir}")
            self._print(f"Trainable parameters: {e.trainable_params:,} of {e.total_params:,} "
                        f"({100 * e.trainable_params / max(e.total_params, 1):.3f}%)")
            self._print(f"Training rows: {e.train_rows}, validation rows: {e.valid_rows}; {e.steps_per_epoch} "
                        f"steps per epoch, {e.total_steps} steps; padding {e.padding_share:.1%}; BLAS: {e.blas}"
                        + (f"; quantized base: {e.quant_path}" if e.quant_path else ""))
            self._print(f"Device: {e.backend}; {e.loss_path}")
            self.bar = tqdm(total=e.total_steps, initial=e.start_step, unit="step", dynamic_ncols=True,
                            disable=not sys.stderr.isatty())
        elif isinstance(e, StepReport):
            if self.bar is not None:
                self.bar.update(e.step - self.bar.n)
                self.bar.set_postfix(loss=f"{e.loss:.3f}", tok_s=f"{e.tokens_per_sec:.0f}")
            self._print(f"step {e.step:>6} | epoch {e.epoch:5.2f} | loss {e.loss:.4f} | lr {e.learning_rate:.2e} | "
                        f"{e.tokens_per_sec:8.0f} tok/s | peak {e.mlx_peak_gb:.2f} GB | rss {e.rss_gb:.2f} GB | "
                        f"ETA {e.eta:6.0f}s")
        elif isinstance(e, ValidationResult):
            best = " (best)" if e.is_best else ""
            self._print(f"step {e.step:>6} | {e.split} loss {e.val_loss:.4f}{best} | {e.val_tokens} tokens "
                        f"in {e.seconds:.1f}s")
        elif isinstance(e, CheckpointSaved):
            self._print(f"step {e.step:>6} | saved {e.path} ({e.reason})")
        elif isinstance(e, TrainWarning):
            self._print(f"warning: {e.message}")
        elif isinstance(e, Finished):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            how = "stopped" if e.stopped else "finished"
            val = f", validation loss {e.val_loss:.4f}" if e.val_loss is not None else ""
            self._print(f"{how} at step {e.step} in {e.elapsed:.1f}s{val}. Adapter: {e.run_dir}")
        elif isinstance(e, Failed):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(f"error: {e.message}", file=sys.stderr)
            for line in e.problems:
                print(line, file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    from .core.trainer import Trainer

    cfg, notes = config_from_args(args)
    reporter = ConsoleReporter()
    for note in notes:
        print(f"warning: {note}")
    trainer = Trainer(cfg, reporter)
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
    if isinstance(result, Failed):
        return result.exit_code
    return 130 if interrupted else 0
