"""The Settings tab's fields: every trainer setting with its label, widget kind, range and tooltip."""

from __future__ import annotations

# (group, key, label, kind, options, tooltip). "lora.x" keys live in lora_parameters.
FIELDS = [
    ("Adapter", "fine_tune_type", "Method", "choice", ["lora", "dora"],
     "LoRA trains small low-rank matrices beside frozen weights. DoRA also learns a magnitude per output: "
     "slightly more memory, about 10-20% slower, sometimes better."),
    ("Adapter", "num_layers", "Layers to adapt", "int", (-1, 512),
     "Adapters go on the last N transformer blocks (-1: all). More layers: more capacity, more memory and time."),
    ("Adapter", "lora.rank", "Rank", "int", (1, 512),
     "Size of the adapter matrices. Higher rank learns more; memory and adapter size grow linearly."),
    ("Adapter", "lora.scale", "Scale (alpha / rank)", "float", (0.01, 1000.0, 2),
     "mlx-lm's 'scale': how strongly the adapter acts (PEFT's alpha divided by rank). No memory or time cost."),
    ("Adapter", "lora.dropout", "Dropout", "float", (0.0, 0.9, 2),
     "Randomly drops adapter inputs while training, against over-fitting small data. Free."),
    ("Adapter", "lora.keys", "Target layers", "text", "all linear layers",
     "Comma-separated layer names inside a block, e.g. self_attn.q_proj, self_attn.v_proj. Empty: every linear "
     "layer (mlx-lm's default). Fewer targets: less memory and time."),
    ("Batches", "batch_size", "Batch size", "int", (1, 1024),
     "Rows per micro-batch. Activation memory grows with it; larger batches use the hardware better."),
    ("Batches", "grad_accumulation_steps", "Gradient accumulation", "int", (1, 1024),
     "Micro-batches per optimizer step: a larger effective batch at no extra memory, more time per step."),
    ("Batches", "max_seq_length", "Max sequence length", "int", (16, 131072),
     "Rows longer than this are truncated (the report counts them). Memory grows with the longest row in a batch."),
    ("Batches", "grad_checkpoint", "Gradient checkpointing", "bool", None,
     "Recompute each block's activations in the backward pass instead of keeping them from the forward: "
     "activation memory drops to about one block's worth, at about a third more time per step. Turn it on when "
     "long rows or large batches run out of memory."),
    ("Duration", "epochs", "Epochs", "int", (1, 1000), "Passes over the training data. Time grows linearly."),
    ("Duration", "iters", "Step budget", "int", (0, 10_000_000),
     "Train for exactly this many optimizer steps instead of epochs (0: use epochs). A step is one optimizer "
     "update; mlx-lm counts micro-batches instead."),
    ("Optimizer", "learning_rate", "Learning rate", "sci", None,
     "Peak learning rate, e.g. 1e-4. Too high diverges (the run stops with a message); too low learns slowly."),
    ("Optimizer", "optimizer", "Optimizer", "choice", ["adamw", "adam", "sgd"],
     "AdamW (default) and Adam keep two moments per adapter weight; SGD keeps none and needs a higher rate."),
    ("Optimizer", "warmup_steps", "Warmup steps", "int", (-1, 1_000_000),
     "Linear warmup before cosine decay. -1: 5% of all steps."),
    ("Optimizer", "grad_clip", "Gradient clipping", "float", (0.0, 1000.0, 2),
     "Clips the gradient's global norm; 0 turns it off. Guards against spikes. Free."),
    ("Evaluation", "steps_per_report", "Report every", "int", (1, 100000), "Steps between loss reports."),
    ("Evaluation", "steps_per_eval", "Validate every", "int", (1, 1000000),
     "Steps between validations. Each one costs about the time of val batches x one forward pass."),
    ("Evaluation", "val_batches", "Validation batches", "int", (-1, 1000000),
     "Batches per validation (-1: the whole validation set). More: steadier curve, more time."),
    ("Evaluation", "test", "Test at the end", "bool", None, "Evaluate on test.jsonl once training ends."),
    ("Evaluation", "test_batches", "Test batches", "int", (-1, 1000000), "Batches for the test (-1: all of it)."),
    ("Checkpoints", "save_every", "Save every", "int", (1, 1000000),
     "Steps between checkpoints. Each holds the adapter and optimizer state (a few MB); Stop also saves."),
    ("Checkpoints", "keep_last", "Keep last", "int", (1, 1000), "Checkpoints kept besides the best one."),
    ("Safety", "fast_quant", "Fast quantized base (CPU)", "bool", None,
     "On the CPU backend the frozen 4/8-bit base is computed as dequantize + BLAS matmul, many times faster than "
     "MLX's CPU quantized kernels, at about one layer's float weights of extra memory. Apple GPUs always keep "
     "MLX's kernels. Same results either way."),
    ("Safety", "seed", "Seed", "int", (0, 2**31 - 1),
     "Fixes the split, the data order, adapter initialisation and dropout: one seed, one result."),
    ("Safety", "max_bad_steps", "Stop after bad steps", "int", (1, 1000),
     "A NaN/inf loss is skipped with a warning; after this many in a row the run stops."),
    ("Safety", "memory_limit_gb", "MLX memory limit (GB)", "float", (0.0, 4096.0, 1),
     "Caps MLX's memory (0: no cap). Over the cap MLX waits or fails rather than swapping the machine."),
    ("Safety", "ram_warn_share", "Warn above share of RAM", "float", (0.1, 1.0, 2),
     "A warning appears in the log when memory use passes this share of the machine's RAM."),
    ("Safety", "clear_cache_gb", "Clear MLX cache above (GB)", "float", (0.0, 4096.0, 1),
     "MLX keeps freed buffers for reuse; above this size they are released. Lower: less memory, a little slower."),
]


LEFT_GROUPS = ("Adapter", "Batches", "Duration")

# What a spin box shows at its minimum, where that value means "automatic" or "none".
SPECIAL_VALUES = {"num_layers": "all", "iters": "off (use epochs)", "warmup_steps": "auto (5%)",
                  "val_batches": "all", "test_batches": "all", "memory_limit_gb": "none",
                  "clear_cache_gb": "always"}
