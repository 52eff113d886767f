"""mlx-lm's config, all of it: its example file and every key of CONFIG_DEFAULTS are honoured or refused with the
reason, its YAML numbers read as numbers, its lr_schedule built as mlx-lm builds it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import yaml
from conftest import fixture_texts, tiny_config

from qlora_gui.core.config import (
    FIELD_NAMES,
    MLX_ALIASES,
    TrainConfig,
    config_from_dict,
    load_config_file,
    read_yaml_mapping,
)
from qlora_gui.core.errors import ConfigError
from qlora_gui.core.events import Failed, Finished, RunStarted, StepReport, TrainWarning
from qlora_gui.core.mlx_keys import MLX_ONLY_KEYS, yaml_numbers
from qlora_gui.core.model.loader import adapter_weights
from qlora_gui.core.train.optimizer import build_optimizer
from qlora_gui.core.train.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "mlx_lm" / "lora_config.yaml"
OURS = {"model", "data", "adapter_path"}  # replaced by the tiny model, its data and a run folder


def example_config() -> str:
    import mlx_lm

    installed = Path(mlx_lm.__file__).parent / "examples" / "lora_config.yaml"
    return (installed if installed.is_file() else FIXTURE).read_text()


def mlx_lm_config_defaults() -> dict:
    """mlx_lm/lora.py's CONFIG_DEFAULTS, read from its source: importing mlx_lm.lora changes yaml.SafeLoader for
    the whole process (it adds its float resolver to it)."""
    import ast

    import mlx_lm

    tree = ast.parse((Path(mlx_lm.__file__).parent / "lora.py").read_text())
    node = next(
        n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONFIG_DEFAULTS"
    )
    return ast.literal_eval(node.value)


def commented_keys(text: str) -> dict:
    """The example's commented-out blocks (lr_schedule, hf_dataset, optimizer_config, report_to ...), as YAML."""
    lines = [line[1:].split(" #")[0] for line in text.splitlines() if re.match(r"#\s*[a-z_]+:|#\s{2,}\S", line)]
    return yaml.load("\n".join(line[1:] if line.startswith(" ") and not line.startswith("  ") else line
                               for line in lines), yaml.SafeLoader)  # fmt: skip


def run(cfg, callback=None):
    events = []

    def both(e):
        events.append(e)
        if callback:
            callback(e)

    trainer = Trainer(cfg, both)
    return trainer, trainer.run(), events


def test_every_mlx_lm_key_is_honoured_or_refused_and_the_readme_says_how():
    text = example_config()
    keys = set(mlx_lm_config_defaults()) | set(yaml.safe_load(text)) | set(commented_keys(text))
    handled = FIELD_NAMES | set(MLX_ALIASES) | MLX_ONLY_KEYS
    assert keys - handled == set()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert {k for k in keys if f"`{k}`" not in readme} == set()


def test_mlx_lm_example_config_reaches_the_trainer(tmp_path, demo_model, text_data):
    path = tmp_path / "lora_config.yaml"
    path.write_text(example_config())
    blocks = commented_keys(example_config())  # uncommented, its lr_schedule reaches the run too
    values = {**read_yaml_mapping(path), **yaml_numbers({k: blocks[k] for k in ("lr_schedule",)})}
    ours = dict(
        model=str(demo_model), data=str(text_data), adapter_path=str(tmp_path / "run"), iters=2, sample_answers=0
    )
    cfg, notes = config_from_dict({**values, **ours})
    assert notes == []
    _, result, events = run(cfg)
    assert isinstance(result, Finished), result
    used = next(e for e in events if isinstance(e, RunStarted)).config
    for key, value in values.items():
        if key in OURS or key in ("iters", "sample_answers"):
            continue
        key = MLX_ALIASES.get(key, key)
        if key == "lora_parameters":
            assert {k: used[key][k] for k in value} == value
        elif key == "train":  # accepted quietly: this trainer trains
            assert value is True
        else:
            assert used[key] == (value if value is not None else ""), key
    warned = " ".join(e.message for e in events if isinstance(e, TrainWarning))
    assert "ignored" not in warned


def test_the_example_commented_blocks_are_each_honoured_or_refused(tmp_path):
    blocks = commented_keys(example_config())
    assert {"lr_schedule", "hf_dataset", "optimizer_config"} <= set(blocks)
    cfg, _ = config_from_dict({"model": "m", "data": "d", "lr_schedule": blocks["lr_schedule"]})
    cfg.validate()
    assert cfg.lr_schedule == {"name": "cosine_decay", "warmup": 100, "warmup_init": 1e-7,
                               "arguments": [1e-5, 1000, 1e-7]}  # fmt: skip
    cfg, _ = config_from_dict({"model": "m", "data": "d", "optimizer_config": blocks["optimizer_config"]})
    cfg.validate()  # passed to mlx.optimizers.AdamW as mlx-lm passes it (tests/test_optimizers.py)
    opt = build_optimizer(cfg, 10)
    assert opt.betas == [0.9, 0.98] and opt.eps == 1e-6 and opt.weight_decay == 0.05 and opt.bias_correction
    cfg, _ = config_from_dict({"hf_dataset": blocks["hf_dataset"], "model": "m"})
    cfg.validate()  # no data needed beside hf_dataset
    assert cfg.hf_dataset["prompt_feature"] == "text"
    cfg, _ = config_from_dict({"model": "m", "data": "d", "report_to": blocks["report_to"],
                               "project_name": blocks["project_name"]})  # fmt: skip
    assert cfg.project_name == "Your-awesome-mlx-project-name"
    missing = [extra for extra in ("wandb", "swanlab") if importlib.util.find_spec(extra) is None]
    if missing:  # refused before the run, naming the extra that installs the first one missing
        with pytest.raises(ConfigError, match=re.escape(f"pip install 'qlora-gui[{missing[0]}]'")):
            cfg.validate()
    else:
        cfg.validate()


def test_numbers_read_as_mlx_lm_reads_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5\noptimizer_config: {adamw: {eps: 1e-6, betas: [0.9, 0.98]}}\n")
    values = read_yaml_mapping(path)
    assert values["learning_rate"] == 1e-5 and values["optimizer_config"]["adamw"]["eps"] == 1e-6
    cfg, _ = config_from_dict({"lr_schedule": {"name": "cosine_decay", "arguments": ["1e-5", 10, "1e-7"]}})
    assert cfg.lr_schedule["arguments"] == [1e-5, 10, 1e-7]


def test_lr_schedule_is_mlx_lms_own_and_bad_ones_say_why(tmp_path, demo_model, text_data):
    from mlx_lm.tuner.utils import build_schedule

    path = tmp_path / "c.yaml"
    path.write_text("lr_schedule: {name: cosine_decay, warmup: 2, warmup_init: 1e-7, arguments: [1e-3, 6, 1e-5]}\n")
    cfg, _ = load_config_file(path)
    cfg.model, cfg.data, cfg.adapter_path = str(demo_model), str(text_data), str(tmp_path / "run")
    cfg.iters, cfg.steps_per_report, cfg.num_layers, cfg.sample_answers = 5, 1, 1, 0
    _, result, events = run(cfg)
    assert isinstance(result, Finished), result
    expected = build_schedule(cfg.lr_schedule)
    rates = [e.learning_rate for e in events if isinstance(e, StepReport)]
    assert rates == pytest.approx([expected(mx.array(s)).item() for s in range(5)], rel=1e-6)
    for bad, why in [
        ({"name": "cosine", "arguments": [1e-5, 10]}, "use one of cosine_decay"),
        ({"name": "cosine_decay", "arguments": [1e-5]}, "decay_steps"),
        ({"name": "cosine_decay", "arguments": [1e-5, 10], "warmpu": 3}, "unknown key 'warmpu'"),
    ]:
        with pytest.raises(ConfigError, match=why):
            TrainConfig(model="m", data="d", lr_schedule=bad).validate()


def test_quiet_keys_and_refusals_name_the_reason():
    assert config_from_dict({"train": True, "config": None})[1] == []
    for values, why in [
        ({"train": False}, "always trains"),
        ({"prompt_feature": "question"}, "rename the field in the files, or set prompt_feature inside hf_dataset"),
        ({"clear_cache_threshold": "lots"}, "not a size"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(why)):
            config_from_dict(values)
    assert config_from_dict({"prompt_feature": "prompt"})[1] == []  # our own name: nothing to rename


def test_clear_cache_threshold_is_mlx_lms_size_in_bytes():
    from qlora_gui.core.memory import GB

    for given, bytes_ in [(0, 0), (500_000_000, 500_000_000), ("2GB", 2 * 10**9), ("300M", 3 * 10**8)]:
        cfg, _ = config_from_dict({"clear_cache_threshold": given})
        assert int(round(cfg.clear_cache_gb * GB)) == bytes_


def test_resume_adapter_file_starts_a_new_run_from_those_weights(tmp_path, demo_model, text_data):
    _, first, _ = run(tiny_config(demo_model, text_data, tmp_path / "a", iters=2, sample_answers=0))
    assert isinstance(first, Finished)
    start = mx.load(str(tmp_path / "a" / "adapters.safetensors"))
    seen = {}
    holder = {}

    def at_start(e):
        if isinstance(e, RunStarted):
            seen.update(adapter_weights(holder["t"].loop.model))

    cfg = tiny_config(demo_model, text_data, tmp_path / "b", iters=2, sample_answers=0,
                      resume_adapter_file=str(tmp_path / "a" / "adapters.safetensors"))  # fmt: skip
    events = []
    holder["t"] = trainer = Trainer(cfg, lambda e: (events.append(e), at_start(e)))
    result = trainer.run()
    assert isinstance(result, Finished) and result.step == 2
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 0
    for key, value in start.items():
        np.testing.assert_array_equal(np.array(seen[key]), np.array(value))
    assert any("starts from the" in e.message for e in events if isinstance(e, TrainWarning))
    bad = tiny_config(demo_model, text_data, tmp_path / "c", iters=1, sample_answers=0,
                      lora_parameters={"rank": 2, "scale": 10.0, "dropout": 0.0},
                      resume_adapter_file=str(tmp_path / "a"))  # fmt: skip
    _, failed, _ = run(bad)
    assert isinstance(failed, Failed) and "use the same rank" in failed.message


def test_trust_remote_code_reaches_the_model_loader(tmp_path, demo_model, text_data):
    custom = tmp_path / "custom_model"
    custom.mkdir()
    for f in demo_model.iterdir():
        (custom / f.name).symlink_to(f)
    config = json.loads((demo_model / "config.json").read_text())
    (custom / "config.json").unlink()
    (custom / "config.json").write_text(json.dumps({**config, "model_file": "arch.py"}))
    (custom / "arch.py").write_text("from mlx_lm.models.llama import Model, ModelArgs  # noqa: F401\n")
    cfg = tiny_config(custom, text_data, tmp_path / "refused", iters=1, sample_answers=0)
    _, refused, _ = run(cfg)
    assert isinstance(refused, Failed) and "trust_remote_code" in refused.message
    cfg = tiny_config(custom, text_data, tmp_path / "trusted", iters=1, sample_answers=0, trust_remote_code=True)
    _, trusted, _ = run(cfg)
    assert isinstance(trusted, Finished), trusted


class FakeDatasets(types.ModuleType):
    """The `datasets` library's load_dataset over rows held here: what it was asked, and an offline miss."""

    def __init__(self, rows):
        super().__init__("datasets")
        self.rows, self.calls = rows, []

    def load_dataset(self, path, split, **config):
        import os

        self.calls.append((path, split, config, os.environ.get("HF_DATASETS_OFFLINE")))
        if path != "local/sql":
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")
        n = len(self.rows)
        part = {"train[:80%]": self.rows[: n * 8 // 10], "train[-10%:]": self.rows[-n // 10 :]}
        return part.get(split, self.rows[:8])


def test_hf_dataset_from_the_local_cache_with_its_features_and_splits(tmp_path, demo_model, monkeypatch):
    texts = fixture_texts(50, seed=4)
    fake = FakeDatasets([{"question": t, "sql": t.upper(), "id": i} for i, t in enumerate(texts)])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    spec = {"path": "local/sql", "prompt_feature": "question", "completion_feature": "sql", "test_split": "test",
            "config": {"revision": "main"}}  # fmt: skip
    cfg = tiny_config(
        demo_model, "", tmp_path / "run", iters=2, sample_answers=0, hf_dataset=spec, test=True, num_layers=1
    )
    _, result, _ = run(cfg)
    assert isinstance(result, Finished), result
    assert [c[1] for c in fake.calls] == ["train[:80%]", "train[-10%:]", "test"]
    assert all(c[2] == {"revision": "main"} and c[3] == "1" for c in fake.calls)
    rows = [json.loads(line) for line in (tmp_path / "run" / "hf_dataset" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and rows[0] == {"prompt": texts[0], "completion": texts[0].upper()}
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"] == str(
        tmp_path / "run" / "hf_dataset"
    )

    cfg = tiny_config(demo_model, "", tmp_path / "miss", iters=1, hf_dataset={"path": "billsum"})
    _, missing, _ = run(cfg)
    assert isinstance(missing, Failed) and "is not available offline" in missing.message
    assert "never downloads" in missing.message


def test_hf_dataset_without_the_datasets_package_names_the_extra(tmp_path, demo_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    cfg = tiny_config(demo_model, "", tmp_path / "run", iters=1, hf_dataset={"path": "billsum"})
    _, failed, _ = run(cfg)
    assert isinstance(failed, Failed) and failed.exit_code == 2
    assert "pip install 'qlora-gui[hf]'" in failed.message


def metrics_values(run: Path) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of metrics.jsonl's numbers as the trackers tag them: each step's loss, learning rate,
    speed and memory, each validation's loss."""
    expected = {}
    for row in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()):
        if row["event"] == "step":
            for name in ("loss", "learning_rate", "tokens_per_sec", "mlx_peak_gb", "trained_tokens"):
                expected[(f"step/{name}", row["step"])] = row[name]
        elif row["event"] == "validation":
            expected[(f"validation_{row['split']}/val_loss", row["step"])] = row["val_loss"]
    return expected


def tensorboard_scalars(folder: Path) -> dict[tuple[str, int], float]:
    """{(tag, step): value} from the TFRecord event files in folder, read with TensorBoard's own Event proto."""
    import struct

    from tensorboardX.proto import event_pb2

    found = {}
    for file in sorted(folder.glob("events.out.tfevents.*")):
        data = file.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4  # length, its CRC, the record, its CRC
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found[(value.tag, event.step)] = value.simple_value
    return found


def test_report_to_tensorboard_logs_what_metrics_jsonl_holds(tmp_path, demo_model, text_data):
    cfg, _ = config_from_dict({"report_to": "tensorboard", "steps_per_eval": 2, "val_batches": 1})
    cfg = tiny_config(demo_model, text_data, tmp_path / "run", iters=3, sample_answers=1, sample_tokens=4,
                      num_layers=1, report_to=cfg.report_to, steps_per_eval=2, val_batches=1)  # fmt: skip
    _, result, _ = run(cfg)
    assert isinstance(result, Finished), result
    logged = tensorboard_scalars(tmp_path / "run" / "tensorboard")
    expected = metrics_values(tmp_path / "run")
    assert len([k for k in expected if k[0] == "step/loss"]) == 3
    assert {k[1] for k in expected if k[0] == "validation_valid/val_loss"} == {0, 2, 3}
    for key, value in expected.items():
        assert logged[key] == np.float32(value), key  # TensorBoard keeps float32
    texts = b"".join(f.read_bytes() for f in (tmp_path / "run" / "tensorboard").glob("events.*"))
    assert b"sample_answers" in texts and b"learning_rate: 0.002" in texts  # the answers table and the settings


def swanlab_records(folder: Path) -> list:
    """Every record of the offline SwanLab run(s) in folder, read with SwanLab's own reader and protobuf."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    records = []
    for file in sorted(folder.glob("run-*/run-*.swanlab")):
        reader = DataStoreReader()
        reader.open(file)
        while (data := reader.scan()) is not None:
            records.append(Record.FromString(data))
    return records


def test_report_to_swanlab_and_trackio_log_what_metrics_jsonl_holds(tmp_path, demo_model, text_data, monkeypatch):
    pytest.importorskip("swanlab")
    pytest.importorskip("trackio")
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "elsewhere"))  # ours is the run folder's; restored after
    folder = tmp_path / "runs" / "run"
    cfg = tiny_config(demo_model, text_data, folder, iters=3, sample_answers=1, sample_tokens=4, num_layers=1,
                      report_to="swanlab, trackio", steps_per_eval=2, val_batches=1)  # fmt: skip
    _, result, _ = run(cfg)
    assert isinstance(result, Finished), result
    expected = metrics_values(folder)
    assert len([k for k in expected if k[0] == "step/loss"]) == 3
    assert {k[1] for k in expected if k[0] == "validation_valid/val_loss"} == {0, 2, 3}

    records = swanlab_records(folder / "swanlog")
    kinds = [r.WhichOneof("record_type") for r in records]
    logged = {(r.scalar.key, r.scalar.step): r.scalar.value.number for r in records if r.HasField("scalar")}
    assert {k: logged[k] for k in expected} == expected
    assert [r.media.step for r in records if r.HasField("media") and r.media.key == "sample_answers"] == [0, 2, 3]
    start = next(r.start for r in records if r.HasField("start"))
    assert (start.project, start.name) == ("runs", "run") and kinds[-1] == "finish"
    saved = yaml.safe_load(next(folder.glob("swanlog/run-*/files/config.yaml")).read_text())
    assert "learning_rate" in json.dumps(saved) and "0.002" in json.dumps(saved)  # the run's settings

    from trackio.sqlite_storage import SQLiteStorage

    assert (folder / "trackio" / "runs.db").is_file() and not (tmp_path / "elsewhere").exists()
    rows = SQLiteStorage.get_logs("runs", "run")
    logged = {(k, row["step"]): v for row in rows for k, v in row.items() if isinstance(v, float)}
    assert {k: logged[k] for k in expected} == expected
    tables = [(row["step"], row["sample_answers"]) for row in rows if "sample_answers" in row]
    assert [s for s, _ in tables] == [0, 2, 3] and set(tables[0][1]["_value"][0]) == {"prompt", "reference", "answer"}
    assert SQLiteStorage.get_run_config("runs", "run")["learning_rate"] == cfg.learning_rate


def test_report_to_is_checked_before_the_run(monkeypatch):
    with pytest.raises(ConfigError, match="'mlflow' is not a tracker"):
        TrainConfig(model="m", data="d", report_to="tensorboard,mlflow").validate()
    for name in ("tensorboardX", "wandb", "swanlab", "trackio"):
        monkeypatch.setitem(sys.modules, name, None)
    for value, extra in [(" tensorboard , wandb", "tensorboard"), ("wandb", "wandb"), ("swanlab", "swanlab"),
                         ("trackio,tensorboard", "trackio")]:  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(f"pip install 'qlora-gui[{extra}]'")):
            TrainConfig(model="m", data="d", report_to=value).validate()
    cfg, _ = config_from_dict({"wandb": "my-project"})  # older mlx-lm's key
    assert (cfg.report_to, cfg.project_name) == ("wandb", "my-project")


class FakeWandb(types.ModuleType):
    """wandb's init/log/Table/finish, recording what the run asked of it."""

    def __init__(self):
        super().__init__("wandb")
        self.init_args, self.logged, self.finished = {}, [], False
        fake = self

        class Run:
            def log(self, values, step):
                fake.logged.append((step, values))

            def finish(self):
                fake.finished = True

        class Table:
            def __init__(self, columns, data):
                self.columns, self.data = columns, data

        self.Run, self.Table = Run, Table

    def init(self, **kw):
        self.init_args = kw
        return self.Run()


def test_report_to_wandb_keeps_an_offline_run_in_the_run_folder(tmp_path, demo_model, text_data, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = tiny_config(demo_model, text_data, tmp_path / "run", iters=2, sample_answers=1, sample_tokens=4,
                      num_layers=1, report_to="wandb", project_name="parity")  # fmt: skip
    _, result, _ = run(cfg)
    assert isinstance(result, Finished), result
    args = fake.init_args
    assert args["mode"] == "offline" and args["dir"] == str(tmp_path / "run") and args["project"] == "parity"
    assert args["config"]["learning_rate"] == cfg.learning_rate and args["resume"] == "allow"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if r["event"] == "step"}
    assert {s: v["step/loss"] for s, v in fake.logged if "step/loss" in v} == losses
    tables = [(s, v["sample_answers"]) for s, v in fake.logged if "sample_answers" in v]
    assert [s for s, _ in tables] == [0, 2] and tables[0][1].columns == ["prompt", "reference", "answer"]
    assert fake.finished
