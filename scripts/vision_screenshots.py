"""Take the README's screenshots of vision training in the real app at 1280x800: the Data tab with picture
rows (thumbnails, and a row's picture tokens as one block), then a 20-step run trained from the Train tab, then
the Playground answering about a dropped picture, base and adapter side by side.

    Xvfb :12 -screen 0 1280x800x24 & DISPLAY=:12 HF_HUB_OFFLINE=1 .venv/bin/python scripts/vision_screenshots.py docs/

Needs the `vision` extra. Uses a tiny random Qwen2-VL built on the spot (tests/vision_models.py) and squares of
two colours; sequencing is done with Qt signals, not sleeps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QTimer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # run as a module too: the shared set-up beside it
from screenshots import throwaway_app, window_at_1280  # noqa: E402 (after the path above)

sys.path.insert(0, str(ROOT / "tests"))

SIZE = 56  # pixels a side: 4 picture tokens a square for the tiny Qwen2-VL


def main(out: Path) -> None:
    from vision_models import QUESTION, build_qwen2_vl, square_png

    from qlora_gui.core.events import Finished
    from qlora_gui.ui.workers.playground_events import ModelLoaded

    out.mkdir(parents=True, exist_ok=True)
    app, tmp = throwaway_app()

    model = build_qwen2_vl(tmp / "tiny-qwen2-vl")
    data = tmp / "squares" / "train.jsonl"
    rows = []
    for i in range(24):
        colour = ("red", "blue")[i % 2]
        square_png(data.parent / "img" / f"square_{i:02d}.png", colour, size=SIZE, seed=i)
        turns = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": colour}]
        rows.append({"images": [f"img/square_{i:02d}.png"], "messages": turns})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    unseen = square_png(tmp / "unseen_red.png", "red", size=SIZE, seed=99)

    window = window_at_1280(tmp / "runs")
    window.model.select_path(str(model))
    shots: list = []

    def snap(name: str) -> None:
        app.processEvents()
        window.grab().save(str(out / f"{name}.png"))
        print("saved", out / f"{name}.png")

    def start() -> None:
        window.dataset.mask_prompt.setChecked(True)
        window.open_dataset(data)
        window.dataset.report_changed.connect(on_report)

    def on_report() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_report)
        window.tabs.setCurrentWidget(window.dataset)
        window.dataset.token_view_shown.connect(on_token_view)
        shots.append(int(window.dataset.preview.item(1, 0).text()))
        window.dataset.preview.setCurrentCell(1, 1)

    def on_token_view() -> None:
        view = window.dataset.token_view.text.view
        if view is None or view.line != shots[0]:
            return
        window.dataset.token_view_shown.disconnect(on_token_view)
        snap("vision-data")
        window.tabs.setCurrentWidget(window.training)
        cfg = window.settings_panel.config()
        cfg.iters, cfg.batch_size, cfg.learning_rate, cfg.num_layers = 20, 4, 1e-3, 2
        cfg.steps_per_report, cfg.steps_per_eval, cfg.save_every, cfg.sample_answers = 1, 10, 10, 0
        cfg.lora_parameters = {"rank": 8, "scale": 10.0, "dropout": 0.0}
        window.settings_panel.set_config(cfg)
        window.start_training()
        window.worker.event.connect(on_event)

    def on_event(e: object) -> None:
        if isinstance(e, Finished):
            QTimer.singleShot(0, after_training)

    def after_training() -> None:
        window.training.charts.redraw()
        snap("vision-training")
        window.runs.refresh()
        window.playground.worker.event.connect(on_playground)
        window.try_run(window.runs.selected_run() or str(next((tmp / "runs").iterdir())))

    def on_playground(e: object) -> None:
        p = window.playground
        if isinstance(e, ModelLoaded):
            p.temperature.setValue(0.0)
            p.max_tokens.setValue(12)
            p.image.set_path(str(unseen))
            p.prompt.setPlainText(QUESTION)
            p.raw_toggle.setChecked(True)
            p.generation_done.connect(on_generated)
            QTimer.singleShot(0, p.generate)

    def on_generated() -> None:
        snap("vision-playground")
        window.close()
        app.quit()

    QTimer.singleShot(0, start)
    app.exec()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
