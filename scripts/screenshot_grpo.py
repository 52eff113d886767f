"""Take the README's GRPO screenshots of the real app at 1280x800: the reward charts and the answers view.

    xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshot_grpo.py docs/

A GRPO run of the demo model in the window, on prompts of random words whose answer is the word the base most
often starts with, rewarded by the built-ins `contains` (and `length`, for short answers). Sequencing is done
with Qt signals, not sleeps.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from PySide6.QtCore import QTimer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # run as a module too: the shared set-up beside it
from screenshots import throwaway_app, window_at_1280  # noqa: E402 (after the path above)

WORDS = "table columns select where from count name year city team score player number date what which".split()


def word_task(model: Path, folder: Path) -> Path:
    """Prompts, each answered by the one word the base likes best at temperature 0.3."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    from qlora_gui.core.data.chat_template import render_chat
    from qlora_gui.core.data.encode import encode_chat_text

    rng = random.Random(3)
    prompts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(48)]
    loaded, tok = load(str(model))
    probs = 0
    for p in prompts[:8]:
        ids = encode_chat_text(tok, render_chat(tok, [{"role": "user", "content": p}], add_generation_prompt=True))
        probs = probs + mx.softmax(loaded(mx.array(ids)[None])[0, -1].astype(mx.float32) / 0.3)
    word = next(w for i in np.argsort(-np.array(probs)) if (w := tok.decode([int(i)]).strip()).isalpha())
    path = folder / "word_prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answer": word}) + "\n" for p in prompts))
    return path


def main(out: Path) -> None:
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    out.mkdir(parents=True, exist_ok=True)
    app, tmp = throwaway_app()

    model = build_demo_model(tmp / "demo-model", DemoModelSpec(hidden_size=128, num_layers=4, vocab_size=768))
    data = word_task(model, tmp)
    window = window_at_1280(tmp / "runs")
    window.model.select_path(str(model))

    def snap(name: str) -> None:
        app.processEvents()
        window.grab().save(str(out / f"{name}.png"))
        print("saved", out / f"{name}.png")

    def on_prompts() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_prompts)
        cfg = window.settings_panel.config()
        cfg.train_mode, cfg.iters, cfg.steps_per_report, cfg.steps_per_eval = "grpo", 16, 1, 4
        cfg.learning_rate, cfg.sample_answers, cfg.batch_size, cfg.group_size = 5e-4, 0, 4, 8
        cfg.max_completion_length, cfg.temperature, cfg.reward_functions = 4, 0.3, "contains,length"
        cfg.reward_weights, cfg.reward_max_chars, cfg.num_layers, cfg.warmup_steps = "1,0.2", 12, 4, 0
        window.settings_panel.set_config(cfg)
        window.tabs.setCurrentWidget(window.training)
        window.start_training()
        window.worker.finished.connect(on_done)

    def on_done() -> None:
        training = window.training
        training.charts.redraw()
        snap("grpo")
        training.bottom.setCurrentWidget(training.completions)
        groups = training.completions.groups  # the step whose answers differ the most: best and worst to see
        spread = [max(c["reward"] for c in g.completions) - min(c["reward"] for c in g.completions) for g in groups]
        training.completions.slider.setValue(spread.index(max(spread)))
        snap("grpo_answers")
        window.close()
        app.quit()

    def start() -> None:
        window.dataset.report_changed.connect(on_prompts)
        window.open_dataset(str(data))

    QTimer.singleShot(300, start)
    app.exec()


if __name__ == "__main__":
    main(Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "docs")))
