"""A run folder's layout: the only code that knows its file names and how checkpoints are named.

RUN/config.yaml               resolved settings
RUN/metrics.jsonl             every event, one JSON line each
RUN/notes.md                  the user's notes (Runs tab)
RUN/evaluation.json           the results of Evaluate (core/after/evaluation.py)
RUN/summary.json              a cache of what the Runs tab shows (run_summary.py): rebuilt when the files it
                              was made from change, so it may be deleted at any time
RUN/owner.lock                who trains in it now (run_lock.py)
RUN/adapters.safetensors      the latest adapter  } mlx-lm reads RUN as an
RUN/adapter_config.json                           } adapter folder unchanged
RUN/checkpoints/0000100/      adapters + adapter config + optimizer.safetensors + state.json
"""

from __future__ import annotations

from pathlib import Path

# An adapter folder, as mlx-lm writes and reads it: a run folder and each checkpoint are one.
ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# What a checkpoint adds, so that training continues exactly.
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


class RunFolder:
    """Paths inside one run folder. Creating one touches no file."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    NOTES = "notes.md"
    EVALUATION = "evaluation.json"
    SUMMARY = "summary.json"
    LOCK = "owner.lock"
    CHECKPOINTS = "checkpoints"
    TENSORBOARD = "tensorboard"  # report_to tensorboard's event files
    SWANLAB = "swanlog"  # report_to swanlab's offline runs
    TRACKIO = "trackio"  # report_to trackio's database
    HF_DATASET = "hf_dataset"  # the rows of an hf_dataset config, as the run trained on them

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def notes(self) -> Path:
        return self.path / self.NOTES

    @property
    def evaluation(self) -> Path:
        return self.path / self.EVALUATION

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def lock(self) -> Path:
        return self.path / self.LOCK

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def swanlab(self) -> Path:
        return self.path / self.SWANLAB

    @property
    def trackio(self) -> Path:
        return self.path / self.TRACKIO

    @property
    def hf_dataset(self) -> Path:
        return self.path / self.HF_DATASET

    @property
    def adapters(self) -> Path:
        return self.path / ADAPTER_FILE

    @property
    def adapter_config(self) -> Path:
        return self.path / ADAPTER_CONFIG

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{step:07d}"

    def holds_a_run(self) -> bool:
        """Anything there besides an empty lock file: a run started in it."""
        return self.path.exists() and any(p.name != self.LOCK or p.stat().st_size for p in self.path.iterdir())

    def same_as(self, other: RunFolder) -> bool:
        return self.path.resolve() == other.path.resolve()


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a checkpoint folder (RUN/checkpoints/0000100 -> 100); None for any other folder."""
    path = Path(path)
    return int(path.name) if path.name.isdigit() and path.parent.name == RunFolder.CHECKPOINTS else None


def run_of(path: str | Path) -> RunFolder:
    """The run an adapter folder belongs to: a checkpoint's run, or the folder itself."""
    path = Path(path)
    return RunFolder(path.parent.parent if checkpoint_step(path) is not None else path)
