"""The trainer's settings: one dataclass whose fields declare every setting once, read from mlx-lm's YAML keys.

A "step" is one optimizer update everywhere here (`iters`, `save_every`,
`steps_per_eval`, `steps_per_report`). mlx-lm counts micro-batches instead, so
with gradient accumulation N, our `iters` equals mlx-lm's `iters / N`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .mlx_keys import (
    OPTIMIZER_CLASS_NAMES,
    hf_dataset_problem,
    lr_schedule_problem,
    mlx_only_values,
    optimizer_config_problem,
    read_yaml_mapping,
    report_to_problem,
    yaml_numbers,
)
from .setting import Setting, declared, setting

STEP_NOTE = (
    "A step is one optimizer update. mlx-lm counts micro-batches: with --grad-accumulation-steps N, "
    "our --iters K equals mlx-lm's --iters K*N."
)
AUTO_WARMUP_SHARE = 0.05  # warmup_steps None: this share of all steps

MLX_ALIASES = {"steps_per_save": "save_every"}  # mlx-lm's TrainingArgs names for our keys

# The declarations below are a table: one setting per entry, kept compact rather than one argument per line.
# fmt: off
# The keys of `lora_parameters`, as mlx-lm's linear_to_lora_layers reads them.
LORA_SETTINGS = (
    Setting("Rank", "Size of the adapter matrices. Higher rank learns more; memory and adapter size grow "
            "linearly.", "int", "Adapter", 1, 512, key="rank", default=8),
    Setting("Scale (alpha / rank)", "mlx-lm's 'scale': how strongly the adapter acts (PEFT's alpha divided by "
            "rank). No memory or time cost.", "float", "Adapter", 0.01, 1000.0, key="scale", default=20.0),
    Setting("Dropout", "Randomly drops adapter inputs while training, against over-fitting small data. Free.",
            "float", "Adapter", 0.0, 1.0, below_maximum=True, key="dropout", default=0.0),
    Setting("Target layers", "Layers to adapt inside each block, comma-separated, e.g. self_attn.q_proj,"
            "self_attn.v_proj. Empty: every linear layer (mlx-lm's default). Fewer targets: less memory and time.",
            "keys", "Adapter", lowest_text="all linear layers", key="keys", default=None),
)


def default_lora_parameters() -> dict[str, Any]:
    return {s.key: s.default for s in LORA_SETTINGS if s.default is not None}


@dataclass
class TrainConfig:
    # Set in the Data and Model tabs, or on the command line.
    model: str = setting("", "Model", "Model folder (Hugging Face layout) or an already-downloaded repo id.",
                         required="no model given; pick a model folder")
    data: str = setting("", "Data", "Folder with train/valid/test .jsonl, or one .jsonl/.json file.",
                        required="no dataset given; pick a folder or a .jsonl/.json file")
    adapter_path: str = setting("", "Run folder", "Run folder to create; by default a new one, runs/DATE-TIME-MODEL.")
    hf_dataset: Any = setting(
        None, "Hugging Face dataset", "mlx-lm's hf_dataset: one mapping or a list of them, each with path, "
        "train_split, valid_split, test_split, config and the *_feature names. Read from the local Hugging Face "
        "datasets cache (never downloaded) and kept in the run folder as train/valid/test files.", "mapping",
        flag=False)
    trust_remote_code: bool = setting(
        False, "Trust remote code", "Let the model folder run its own Python code to build the model or tokenizer "
        "(mlx-lm's trust_remote_code). Only for models you trust.", "bool")
    resume_adapter_file: str = setting(
        "", "Start from adapter", "Adapter weights (an adapters.safetensors made for the same model and adapter "
        "settings) that a new run starts from instead of fresh ones: mlx-lm's resume_adapter_file. Step, schedule "
        "and optimizer start at zero; to continue a run exactly, use --resume.", "file")
    quantize_bits: int | None = setting(
        None, "Quantize on load", "Quantize a full-precision base to 4 or 8 bits on load (QLoRA).", "choice",
        choices=(4, 8), off=None, lowest_text="no")
    quantize_group_size: int = setting(
        64, "Group size", "Weights per quantization group: smaller groups are more accurate and a bit larger.",
        "choice", choices=(32, 64, 128))
    mask_prompt: bool = setting(
        False, "Train on completions only", "Only the answer (completion / assistant turns) is trained on; the "
        "prompt is masked. Needs prompt/completion or chat rows. Costs nothing extra.", "bool")
    valid_fraction: float = setting(
        0.1, "Validation share", "Share of a single file held out as validation data (seeded; a row never lands "
        "in both). A folder with valid.jsonl uses that file instead.", "float", minimum=0.0, maximum=0.5)
    resume: bool = setting(False, "Resume", "Continue the run in --adapter-path from its latest checkpoint, with its "
                           "own settings.", "bool")

    # The Settings tab, box by box.
    train_mode: str = setting(
        "sft", "Training mode", "SFT learns to write the data's answers. DPO and ORPO learn from preference pairs (a "
        "prompt with a chosen and a rejected answer) to prefer the chosen kind: DPO stays near the base, which is "
        "its reference (measured once per run, no second model in memory); ORPO needs no reference and also "
        "learns to write the chosen answers. GRPO learns from rewards: for each prompt the model writes a group "
        "of answers, the rewards score them, and it learns to write more like the better ones.", "choice",
        "Training mode", choices=("sft", "dpo", "orpo", "grpo"))
    beta: float = setting(
        0.1, "Beta", "DPO: how far the adapter may move from the base (higher keeps it closer). ORPO: the weight of "
        "the preference term beside the chosen answers' loss. GRPO: the weight of the KL divergence to the frozen "
        "base (measured with the adapters switched off: no second model in memory); 0 skips it. Unused by SFT.",
        "float", "Training mode", 0.0, 100.0, decimals=3)
    label_smoothing: float = setting(
        0.0, "Label smoothing", "DPO only: the share of pairs taken to be labelled the wrong way round (robust to "
        "noisy labels); 0 trusts every label.", "float", "Training mode", 0.0, 0.5, below_maximum=True)
    group_size: int = setting(
        4, "Answers per prompt", "GRPO: answers sampled for each prompt (the group G); each is scored against the "
        "group's mean. Time and memory grow with it.", "int", "GRPO", 2, 256)
    micro_batch_size: int | None = setting(
        None, "Answers per pass", "GRPO: answers trained in one forward and backward pass; a step's answers (batch "
        "size x answers per prompt) are summed over as many passes as it takes, exactly as one. More: faster on a "
        "GPU, more activation memory. Off: the batch size, so the group size does not multiply memory.", "int",
        "GRPO", 1, 65536, off=None, lowest_text="= batch size")
    max_completion_length: int = setting(
        64, "Max answer length", "GRPO: tokens sampled per answer, at most.", "int", "GRPO", 1, 65536, unit="tokens")
    temperature: float = setting(
        0.8, "Temperature", "GRPO: sampling temperature of the answers. Higher: more varied groups (more to learn "
        "from), noisier answers.", "float", "GRPO", 0.01, 10.0)
    top_p: float = setting(
        1.0, "Top-p", "GRPO: sample only from the most likely tokens that together hold this probability; 1 "
        "keeps all.", "float", "GRPO", 0.01, 1.0)
    epsilon: float = setting(
        0.2, "Clip epsilon", "GRPO: the importance ratio is clipped to [1 - epsilon, 1 + epsilon-high].", "float",
        "GRPO", 0.0, 10.0, decimals=4)
    epsilon_high: float | None = setting(
        None, "Clip epsilon high", "GRPO: the upper clip (DAPO's clip-higher); off: the same as epsilon.", "float",
        "GRPO", 0.0, 10.0, decimals=4, off=None, lowest_text="= epsilon")
    grpo_loss_type: str = setting(
        "grpo", "GRPO loss", "grpo: each answer's mean token loss, averaged over answers; bnpo: every answer token "
        "weighs the same; dr_grpo (Dr. GRPO): token sums over answers x answer length, advantages not divided by "
        "the group's spread (no length or difficulty bias).", "choice", "GRPO", choices=("grpo", "dr_grpo", "bnpo"))
    importance_sampling_level: str = setting(
        "token", "Importance ratio", "GRPO: one ratio per token, or per answer (sequence: GSPO's, the mean of the "
        "token log-ratios).", "choice", "GRPO", choices=("token", "sequence"))
    reward_functions: str = setting(
        "", "Reward functions", "GRPO: comma-separated names of built-in rewards (exact, contains, format, numeric, "
        "json, length) or of functions in the reward functions file. Empty: the file's functions, else exact.",
        "text", "GRPO", lowest_text="the file's, else exact")
    reward_weights: str = setting(
        "", "Reward weights", "GRPO: one weight per reward function, comma-separated (e.g. 1,0.5); empty: 1 each.",
        "text", "GRPO")
    reward_functions_file: str = setting(
        "", "Reward functions file", "GRPO: a Python file of `def NAME(prompts, completions, answers)` functions, "
        "each returning one number per completion (answers: each row's 'answer', or None). Checked on the first "
        "rows before any weights load.", "file", "GRPO")
    reward_pattern: str = setting(
        r"^<think>[\s\S]*?</think>\s*\S[\s\S]*$", "Format pattern", "GRPO: the regular expression the built-in "
        "'format' reward checks each answer against (searched in the trimmed answer).", "text", "GRPO")
    reward_min_chars: int = setting(
        1, "Length from", "GRPO: the built-in 'length' reward's shortest answer, in characters.", "int", "GRPO",
        0, 1_000_000)
    reward_max_chars: int = setting(
        200, "Length to", "GRPO: the built-in 'length' reward's longest answer, in characters.", "int", "GRPO",
        0, 1_000_000)
    fine_tune_type: str = setting(
        "lora", "Method", "LoRA trains small low-rank matrices beside frozen weights. DoRA also learns a magnitude "
        "per output: slightly more memory, about 10-20% slower, sometimes better. Full trains every weight of the "
        "adapted layers (as mlx-lm's full): a float base only, with gradients and optimizer state for each of those "
        "weights, and checkpoints that hold the layers' weights.", "choice", "Adapter",
        choices=("lora", "dora", "full"))
    num_layers: int = setting(
        16, "Layers to adapt", "Adapters go on the last N transformer blocks (all of them when the model has "
        "fewer). More layers: more capacity, more memory and time.", "int", "Adapter", 1, 512, off=-1,
        lowest_text="all")
    lora_parameters: dict[str, Any] = setting(
        default_lora_parameters(), "LoRA parameters", "Rank, scale, dropout and keys.", "mapping", flag=False)
    batch_size: int = setting(
        4, "Batch size", "Rows per micro-batch. Activation memory grows with it; larger batches use the hardware "
        "better.", "int", "Batches", 1, 1024)
    grad_accumulation_steps: int = setting(
        1, "Gradient accumulation", "Micro-batches per optimizer step: a larger effective batch at no extra "
        "memory, more time per step.", "int", "Batches", 1, 1024)
    max_seq_length: int = setting(
        2048, "Max sequence length", "Rows longer than this are truncated (the report counts them). Memory grows "
        "with the longest row in a batch.", "int", "Batches", 16, 1 << 20, unit="tokens")
    grad_checkpoint: bool = setting(
        False, "Gradient checkpointing", "Recompute each block's activations in the backward pass instead of "
        "keeping them: activation memory drops to about one block's worth, at about a third more time per step. "
        "Memory comes first then: the loss works on small chunks (and on the CPU, MLX queues less work ahead). "
        "Turn it on when long rows or large batches run out of memory.", "bool", "Batches")
    epochs: int = setting(1, "Epochs", "Passes over the training data. Time grows linearly.", "int", "Duration",
                          1, 1000)
    iters: int | None = setting(
        None, "Step budget", "Train for exactly this many optimizer steps instead of epochs. " + STEP_NOTE, "int",
        "Duration", 1, 10_000_000, off=None, lowest_text="off (use epochs)")
    learning_rate: float = setting(
        1e-5, "Learning rate", "Peak learning rate, e.g. 1e-4. Too high diverges (the run stops with a message); "
        "too low learns slowly.", "sci", "Optimizer", 0.0, above_minimum=True)
    optimizer: str = setting(
        "adamw", "Optimizer", "AdamW (default) and Adam keep two moments per trained weight; SGD and Muon one "
        "velocity (Muon orthogonalises each matrix's update; it suits hidden-layer matrices); Adafactor a factored "
        "second moment, the least memory, and by default its own relative step size (the learning rate counts only "
        "with optimizer_config {adafactor: {relative_step: false}}), as in mlx-lm.", "choice", "Optimizer",
        choices=tuple(OPTIMIZER_CLASS_NAMES))
    optimizer_config: dict[str, Any] = setting(
        {}, "Optimizer options", "mlx-lm's optimizer_config: each optimizer's own arguments under its name, e.g. "
        "{adamw: {weight_decay: 0.05, betas: [0.9, 0.98]}}; the chosen optimizer's are used.", "mapping", flag=False)
    lr_schedule: dict[str, Any] | None = setting(
        None, "Learning-rate schedule", "mlx-lm's lr_schedule mapping; none: linear warmup, then cosine decay.",
        "mapping", flag=False)
    warmup_steps: int | None = setting(
        None, "Warmup steps", f"Linear warmup before cosine decay; auto: {AUTO_WARMUP_SHARE:.0%} of all steps.",
        "int", "Optimizer", 0, 1_000_000, off=None, lowest_text=f"auto ({AUTO_WARMUP_SHARE:.0%})")
    grad_clip: float = setting(
        1.0, "Gradient clipping", "Clips the gradient's global norm; 0 turns it off. Guards against spikes. Free.",
        "float", "Optimizer", 0.0, 1000.0, lowest_text="off")
    steps_per_report: int = setting(10, "Report every", "Steps between loss reports.", "int", "Evaluation",
                                    1, 100_000, unit="steps")
    steps_per_eval: int = setting(
        200, "Validate every", "Steps between validations. Each one costs about the time of val batches x one "
        "forward pass.", "int", "Evaluation", 1, 1_000_000, unit="steps")
    val_batches: int = setting(
        25, "Validation batches", "Batches per validation. More: a steadier curve, more time.", "int", "Evaluation",
        1, 1_000_000, off=-1, lowest_text="all")
    report_to: str = setting(
        "", "Report to", "Experiment trackers, comma-separated as in mlx-lm: tensorboard (event files in "
        "RUN/tensorboard), wandb (an offline run in RUN/wandb, for `wandb sync`; WANDB_MODE=online logs live), "
        "swanlab (an offline run in RUN/swanlog, for `swanlab sync`; SWANLAB_MODE=online logs live) and trackio "
        "(its database in RUN/trackio: TRACKIO_DIR=RUN/trackio trackio show). Each logs the losses, learning rate, "
        "speed, memory, sample answers and the settings. Each needs its optional extra: pip install "
        "'qlora-gui[tensorboard]', 'qlora-gui[wandb]', 'qlora-gui[swanlab]' or 'qlora-gui[trackio]'.", "text",
        "Evaluation")
    project_name: str = setting("", "Project name", "The tracker's project; empty: the run folder's parent's name.",
                                "text", "Evaluation")
    test: bool = setting(False, "Test at the end", "Evaluate on test.jsonl once training ends.", "bool",
                         "Evaluation")
    test_batches: int = setting(-1, "Test batches", "Batches for the test at the end.", "int", "Evaluation",
                                1, 1_000_000, off=-1, lowest_text="all")
    sample_answers: int = setting(
        2, "Sample answers", "Prompts the model answers (greedy) at the start, at each validation and at the end, "
        "so you see what it learns: the Train tab's Sample answers, metrics.jsonl. Their time is reported and kept "
        "out of tokens/s.", "int", "Sample answers", 0, 4, lowest_text="off")
    sample_prompts: str = setting(
        "", "Prompts file", "Rows in any data format, or {\"prompt\": ...} rows; the first ones are asked, and an "
        "answer in a row is shown as its reference. Empty: rows of the validation split.", "file", "Sample answers",
        lowest_text="rows of the validation split")
    sample_tokens: int = setting(48, "Answer length", "Tokens generated per sample answer, at most.", "int",
                                 "Sample answers", 1, 4096, unit="tokens")
    save_every: int = setting(
        100, "Save every", "Steps between checkpoints. Each holds the adapter and optimizer state (a few MB); "
        "Stop also saves.", "int", "Checkpoints", 1, 1_000_000, unit="steps")
    keep_last: int = setting(3, "Keep last", "Checkpoints kept besides the best one.", "int", "Checkpoints", 1, 1000)
    fast_quant: bool = setting(
        True, "Fast quantized base (CPU)", "On the CPU backend the frozen 4/8-bit base is computed as dequantize + "
        "BLAS matmul, many times faster than MLX's CPU quantized kernels, at about one layer's float weights of "
        "extra memory. Apple GPUs always keep MLX's kernels. Same results either way.", "bool", "Safety")
    seed: int = setting(0, "Seed", "Fixes the split, the data order, adapter initialisation and dropout: one seed, "
                        "one result.", "int", "Safety", 0, 2**31 - 1)
    max_bad_steps: int = setting(
        5, "Stop after bad steps", "A NaN/inf loss is skipped with a warning; after this many in a row the run "
        "stops.", "int", "Safety", 1, 1000)
    divergence_retries: int = setting(
        0, "Retry after divergence", "When a run stops for bad steps: go back to the last checkpoint, halve the "
        "learning rate and go on, up to this many times (each is marked on the loss chart).", "int", "Safety",
        0, 10, lowest_text="off: stop")
    memory_limit_gb: float | None = setting(
        None, "MLX memory limit", "Caps MLX's memory. Over the cap MLX waits or fails rather than swapping the "
        "machine.", "float", "Safety", 0.0, 4096.0, above_minimum=True, decimals=1, off=None, lowest_text="none",
        unit="GB")
    ram_warn_share: float = setting(
        0.9, "Warn above share of RAM", "A warning appears in the log when memory use passes this share of the "
        "machine's RAM.", "float", "Safety", 0.1, 1.0)
    clear_cache_gb: float = setting(
        2.0, "Clear MLX cache above", "MLX keeps freed buffers for reuse; above this size they are released. "
        "Lower: less memory, a little slower.", "float", "Safety", 0.0, 4096.0, decimals=1, lowest_text="always",
        unit="GB")
    # fmt: on

    def value(self, key: str) -> Any:
        """A setting's value by its key ('batch_size', 'lora_parameters.rank')."""
        if key.startswith("lora_parameters."):
            return self.lora_parameters.get(key.split(".", 1)[1])
        return getattr(self, key)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and what to use instead."""
        if "alpha" in self.lora_parameters and "scale" not in self.lora_parameters:
            why = "mlx-lm stores the LoRA strength as 'scale' (= alpha / rank); rename 'alpha'"
            raise ConfigError(f"setting 'lora_parameters': {why}", setting="lora_parameters", why=why)
        if self.fine_tune_type == "full" and self.quantize_bits:
            why = "full fine-tuning trains float weights; a base quantized on load has none: use lora or dora (QLoRA)"
            raise ConfigError(f"setting 'quantize_bits': {why}", setting="quantize_bits", why=why)
        if self.train_mode in ("dpo", "orpo") and self.beta <= 0:
            why = f"{self.train_mode.upper()} needs a beta above 0 (0 only turns off GRPO's KL term); e.g. 0.1"
            raise ConfigError(f"setting 'beta': {why}", setting="beta", why=why)
        for s in SETTINGS:
            if s.key == "data" and self.hf_dataset:  # the data comes from hf_dataset
                continue
            if s.key == "hf_dataset":
                problem = hf_dataset_problem(self.hf_dataset)
            elif s.key == "lr_schedule":
                problem = lr_schedule_problem(self.lr_schedule)
            elif s.key == "report_to":
                problem = report_to_problem(self.report_to)
            elif s.key == "optimizer_config":
                problem = optimizer_config_problem(self.optimizer_config)
            elif s.key == "reward_pattern":
                problem = pattern_problem(self.reward_pattern)
            else:
                problem = s.problem(self.value(s.key))
            if problem:
                raise ConfigError(f"setting '{s.key}': {problem}", setting=s.key, why=problem)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def pattern_problem(pattern: str) -> str | None:
    """Why a regular expression does not compile; None when it does."""
    try:
        re.compile(pattern)
    except re.error as e:
        return f"not a regular expression ({e}); e.g. ^<answer>.*</answer>$"
    return None


SETTINGS: tuple[Setting, ...] = declared(TrainConfig, {"lora_parameters": LORA_SETTINGS})
SETTING_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
FIELD_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}


def default_of(key: str) -> Any:
    """A setting's default, for code that reads a run's saved config where the key may be missing."""
    return SETTING_BY_KEY[key].default


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> tuple[TrainConfig, list[str]]:
    """Apply mlx-lm's or our keys onto a config. Every key is honoured or refused with the reason (ConfigError);
    returns the config and notes about how mlx-lm keys were read."""
    cfg = dataclasses.replace(base) if base else TrainConfig()
    notes: list[str] = []
    for key, value in values.items():
        key = key.replace("-", "_")
        key = MLX_ALIASES.get(key, key)
        translated = mlx_only_values(key, value)
        if translated is not None:
            for field_name, field_value in translated.items():
                setattr(cfg, field_name, field_value)
            continue
        if key not in FIELD_NAMES:
            near = difflib.get_close_matches(key, sorted(FIELD_NAMES), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        if key == "lora_parameters":
            merged = default_lora_parameters()
            for name, sub in (value or {}).items():
                spec = SETTING_BY_KEY.get(f"lora_parameters.{name}")
                merged[name] = spec.coerce(sub) if spec else sub
            value = merged
        elif key in ("lr_schedule", "optimizer_config"):
            value = yaml_numbers(value)
        else:
            value = SETTING_BY_KEY[key].coerce(value)
        if key == "optimizer_config" and value is None:
            value = {}
        setattr(cfg, key, value)
    return cfg, notes


def load_config_file(path: str | Path) -> tuple[TrainConfig, list[str]]:
    return config_from_dict(read_yaml_mapping(path))
