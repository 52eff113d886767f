"""Shared fixtures: a tiny random Llama with a BPE tokenizer, and small data files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikisql"

WORDS = (
    "table columns select where from count name year city team score player number date "
    "what which how many is the of in for and list show"
).split()


def fixture_texts(n: int = 200, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18))) for _ in range(n)]


def write_jsonl(path: Path, rows: list, raw_lines: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + (raw_lines or [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def token_cache_folder(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own token cache: nothing from the user's, nothing kept from another test."""
    folder = tmp_path_factory.mktemp("token-cache")
    monkeypatch.setenv("QLORA_GUI_TOKEN_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with a chat template."""
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("models") / "tiny", DemoModelSpec(), corpus=fixture_texts(400))


@pytest.fixture(scope="session")
def demo_model_no_template(tmp_path_factory) -> Path:
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    spec = DemoModelSpec(chat_template=False)
    return build_demo_model(tmp_path_factory.mktemp("models") / "tiny_plain", spec, corpus=fixture_texts(400))


@pytest.fixture(scope="session")
def tokenizer(demo_model):
    from qlora_gui.core.model.model_files import load_tokenizer

    return load_tokenizer(demo_model)


@pytest.fixture()
def text_data(tmp_path) -> Path:
    """A folder in mlx-lm layout: 48 train rows, 12 valid rows of text."""
    texts = fixture_texts(60, seed=1)
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": t} for t in texts[:48]])
    write_jsonl(tmp_path / "data" / "valid.jsonl", [{"text": t} for t in texts[48:]])
    return tmp_path / "data"


@pytest.fixture()
def completion_data(tmp_path) -> Path:
    texts = fixture_texts(40, seed=2)
    rows = [{"prompt": t, "completion": " ".join(reversed(t.split()))} for t in texts]
    return write_jsonl(tmp_path / "pc.jsonl", rows)


def close(cpu: float) -> float:
    """A tolerance that holds on the default device: GPU float32 matmuls round differently from the CPU's
    (1.06e-5 seen on CUDA against a CPU-sized 1e-5), so GPUs get ten times the room."""
    import mlx.core as mx

    return cpu if mx.default_device().type == mx.DeviceType.cpu else cpu * 10


def poisoned_loss(batches, factor):
    """token_loss, times `factor` (nan or inf) on exactly these batches, decided inside the graph.

    A compiled step traces the loss once per shape, so a Python counter cannot pick the n-th call;
    the batch's own tokens can."""
    import mlx.core as mx
    import numpy as np

    from qlora_gui.core.train.losses import token_loss

    marks = mx.array([float(np.asarray(b.inputs, dtype=np.float64).sum()) for b in batches])

    def loss(model, inputs, positions, targets, weights):
        s, n = token_loss(model, inputs, positions, targets, weights)
        hit = mx.any(marks == inputs.astype(mx.float32).sum())
        return s * mx.where(hit, factor, 1.0), n  # not where(hit, s * factor, s): its gradient is NaN anyway

    return loss


def mean_gradient(grads, totals):
    """The summed gradient over all trained tokens of a step (totals = [loss sum, token count, ...]): one big
    batch's gradient, to compare accumulated steps with."""
    from mlx.utils import tree_map

    return tree_map(lambda g: g / totals[1], grads)


def tiny_config(demo_model, data, run_dir, **kw):
    """Settings for a short run of the tiny model: two adapted layers, rank 4, no dropout, reports every step,
    no validation or checkpoint before the end; `kw` overrides any of them."""
    from qlora_gui.core.config import TrainConfig

    base = dict(
        model=str(demo_model),
        data=str(data),
        adapter_path=str(run_dir),
        batch_size=4,
        num_layers=2,
        learning_rate=2e-3,
        steps_per_report=1,
        steps_per_eval=1000,
        save_every=1000,
        val_batches=-1,
        lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.0},
    )
    return TrainConfig(**{**base, **kw})


# The fast lane (`pytest -m "not slow"`): the core's unit tests. Whole modules of GUI, end-to-end, install,
# bundle and monkey tests are slow, and so is any other test that drives widgets (asks for qtbot).
SLOW_MODULES = {
    "test_bundle",
    "test_install",
    "test_monkey",
    "test_gui",
    "test_gui_after_training",
    "test_gui_machines",
    "test_gui_platform",
    "test_gui_truth",
    "test_gui_vision",
    "test_vision_training",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")
        if module in SLOW_MODULES or "qtbot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def unasked_questions(request):
    """In a test that drives widgets, MainWindow.confirm (a modal question) never blocks: a test that leaves a
    run going when it fails reaches it from closeEvent at teardown, where nobody would answer and pytest would
    hang. Unless the test answers itself (it sets `window.confirm`), the answer is yes (stop the run and close)
    and the question is recorded here; one asked and left to this guard is reported as a warning."""
    if "qtbot" not in request.fixturenames:
        yield []
        return
    from qlora_gui.ui.main_window import MainWindow

    asked: list[tuple[str, str]] = []
    patch = pytest.MonkeyPatch()
    patch.setattr(MainWindow, "confirm", lambda self, title, text: asked.append((title, text)) or True)
    yield asked
    patch.undo()
    if asked:
        import warnings

        warnings.warn(f"a question no test answered was taken as yes: {asked}", stacklevel=1)


# ---------------------------------------------------------------- vision-language models (the `vision` extra)
# Session-scoped: the tiny models are built, and trained 20 steps on red/blue squares, once.


@pytest.fixture(scope="session")
def offline_hub():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # Qwen's processor would otherwise ask the Hub
        yield


@pytest.fixture(scope="session")
def vision_models(offline_hub, tmp_path_factory) -> dict[str, Path]:
    """Tiny random Qwen2-VL, Qwen2.5-VL and Gemma 3 (tests/vision_models.py), built once."""
    from vision_models import build_gemma3, build_qwen2_5_vl, build_qwen2_vl

    root = tmp_path_factory.mktemp("vision_models")
    built = {"qwen2_vl": build_qwen2_vl, "qwen2_5_vl": build_qwen2_5_vl, "gemma3": build_gemma3}
    return {family: build(root / family) for family, build in built.items()}


@pytest.fixture(scope="session")
def squares(tmp_path_factory) -> Path:
    """18 rows (the last batch of 4 holds 2: no row may be dropped), alternately red and blue squares."""
    from vision_models import QUESTION, square_png

    root = tmp_path_factory.mktemp("squares")
    rows = []
    for i in range(18):
        colour = ("red", "blue")[i % 2]
        square_png(root / "img" / f"{i}.png", colour, seed=i)
        rows.append(
            {
                "images": [f"img/{i}.png"],
                "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": colour}],
            }
        )
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def vision_runs(vision_models, squares, tmp_path_factory) -> dict[str, tuple[Path, list]]:
    from vision_models import FAMILIES, run_events, vision_config

    """Each family trained 20 steps on the squares once: its run folder and events."""
    from qlora_gui.core.events import Finished

    out = {}
    for family in FAMILIES:
        run = tmp_path_factory.mktemp(f"run_{family}") / "run"
        result, events = run_events(vision_config(vision_models[family], squares, run))
        assert isinstance(result, Finished) and result.step == 20, result
        out[family] = (run, events)
    return out
