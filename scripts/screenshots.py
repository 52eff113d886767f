"""Take the README's screenshots of the real app at 1280x800.

    xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots.py docs/

Uses a throw-away settings store, the demo model and the sample data, and a
bad file made on the spot. Sequencing is done with Qt signals, not sleeps.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QTimer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def throwaway_app() -> tuple[Any, Path]:
    """The app with its settings in a new temporary folder (never the user's), and that folder."""
    from qlora_gui.ui.app import create_app

    tmp = Path(tempfile.mkdtemp())
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    return create_app(), tmp


def window_at_1280(runs_root: Path) -> Any:
    """The main window at the README's size, shown at the screen's corner."""
    from qlora_gui.ui.main_window import MainWindow

    window = MainWindow(runs_root=runs_root)
    window.resize(1280, 800)
    window.move(0, 0)
    window.show()
    return window


def main(out: Path) -> None:
    from qlora_gui.core.events import StepReport
    from qlora_gui.core.inference.samples import PromptSample
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model
    from qlora_gui.core.resources import sample_data_path, sample_preferences_path
    from qlora_gui.ui.workers.playground_events import ModelLoaded

    out.mkdir(parents=True, exist_ok=True)
    app, tmp = throwaway_app()

    model = build_demo_model(tmp / "demo-model", DemoModelSpec(hidden_size=128, num_layers=4, vocab_size=768))
    bad = tmp / "support_chats.jsonl"
    rows = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ]
            }
        )
        for i in range(30)
    ]
    rows[6] = '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}'
    rows[11] = '{"prompt": "mixed in", "completion": "by mistake"}'
    rows[17] = '{"messages": [{"role": "user", "content": "unfinished"}'
    rows[23] = '{"messages": "not a list"}'
    bad.write_text("\n".join(rows) + "\nthe end\n")

    window = window_at_1280(tmp / "runs")
    window.model.select_path(str(model))
    window.settings_panel.presets.setCurrentIndex(1)
    window.settings_panel.apply_preset(1)  # Quick test
    shots: list = []

    def snap(name: str) -> None:
        app.processEvents()
        window.grab().save(str(out / f"{name}.png"))
        print("saved", out / f"{name}.png")

    def step_idle() -> None:
        window.dataset.mask_prompt.setChecked(True)
        window.open_dataset(sample_data_path())
        window.dataset.report_changed.connect(on_report)

    def on_report() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_report)
        window.tabs.setCurrentWidget(window.model)
        snap("model")
        window.tabs.setCurrentWidget(window.settings_panel)
        snap("settings")
        window.tabs.setCurrentWidget(window.dataset)
        window.dataset.token_view_shown.connect(on_token_view)
        shots.append(int(window.dataset.preview.item(1, 0).text()))
        window.dataset.preview.setCurrentCell(1, 1)

    def on_token_view() -> None:
        if window.dataset.token_view.text.view is None or window.dataset.token_view.text.view.line != shots[0]:
            return
        shots.clear()
        window.dataset.token_view_shown.disconnect(on_token_view)
        snap("data")
        if "--data-only" in sys.argv:
            window.close()
            app.quit()
            return
        window.dataset.report_changed.connect(on_bad)
        window.open_dataset(bad)

    def on_bad() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_bad)
        window.dataset.problems.setCurrentRow(1)
        snap("bad-data")
        window.open_dataset(sample_data_path())
        window.dataset.report_changed.connect(on_good_again)

    def on_good_again() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_good_again)
        window.tabs.setCurrentWidget(window.training)
        cfg = window.settings_panel.config()
        cfg.iters, cfg.steps_per_report, cfg.steps_per_eval, cfg.save_every = 1200, 2, 50, 100
        cfg.learning_rate = 3e-3
        window.settings_panel.set_config(cfg)
        window.start_training()
        window.worker.event.connect(on_progress)

    def on_progress(e: object) -> None:
        if isinstance(e, StepReport) and e.step >= 400 and not shots:
            shots.append(1)
            window.training.charts.redraw()
            snap("training")
            window.set_dark(True)
            snap("training-dark")
            window.tabs.setCurrentWidget(window.dataset)
            snap("data-dark")
            window.tabs.setCurrentWidget(window.training)
            window.set_dark(False)
            window.worker.finished.connect(on_stopped)  # the run goes on to its end, for the playground

    def on_stopped() -> None:
        view = window.training
        view.bottom.setCurrentWidget(view.samples)  # the tab takes its room; the charts keep theirs (never collapse)
        snap("samples")
        view.bottom.setCurrentIndex(0)
        window.tabs.setCurrentWidget(window.runs)  # a hidden Runs tab reads its runs when it is next shown
        window.runs.refresh()
        window.runs.select_runs([window.runs.table.topLevelItem(0).text(0)])
        window.runs.set_notes("Quick test preset on the demo model, lr 3e-3")
        window.runs.evaluated.connect(on_evaluated)
        window.runs.evaluate_selected()

    def on_evaluated() -> None:
        snap("runs")
        window.playground.worker.event.connect(on_playground)
        window.try_run(window.runs.selected_run())

    def on_playground(e: object) -> None:
        p = window.playground
        if isinstance(e, ModelLoaded):
            p.temperature.setValue(0.0)
            p.max_tokens.setValue(40)
            p.raw_toggle.setChecked(True)
            p.sample_button.click()
        elif isinstance(e, PromptSample):
            p.generation_done.connect(on_generated)
            QTimer.singleShot(0, p.generate)

    def on_generated() -> None:
        snap("playground")
        window.export_run(window.runs.selected_run())
        dialog = window.export_dialog
        dialog.open_when_done = False
        dialog.format.setCurrentIndex(dialog.format.findData("gguf"))  # what most people download: Q4_0 for Ollama
        dialog.gguf_type.setCurrentIndex(dialog.gguf_type.findData("q4_0"))
        dialog.ollama.setChecked(True)
        dialog.exported.connect(lambda _path: on_exported(dialog))
        dialog.start()

    def on_exported(dialog) -> None:
        app.processEvents()
        dialog.grab().save(str(out / "export.png"))
        print("saved", out / "export.png")
        dialog.close()
        from qlora_gui.ui.dialogs.help_dialogs import UserGuideDialog

        guide = UserGuideDialog(window)
        guide.resize(1100, 720)
        guide.show()
        titles = [guide.index.item(i).text() for i in range(guide.index.count())]
        guide.index.setCurrentRow(titles.index("A short tour"))
        app.processEvents()
        guide.grab().save(str(out / "help.png"))
        print("saved", out / "help.png")
        guide.close()
        window.dataset.report_changed.connect(on_pairs)
        window.open_dataset(sample_preferences_path())

    def on_pairs() -> None:
        if window.dataset.checking:
            return
        window.dataset.report_changed.disconnect(on_pairs)
        cfg = window.settings_panel.config()
        cfg.train_mode, cfg.iters, cfg.steps_per_report, cfg.steps_per_eval = "dpo", 300, 3, 25
        cfg.learning_rate, cfg.sample_answers = 5e-4, 0
        window.settings_panel.set_config(cfg)
        window.tabs.setCurrentWidget(window.training)
        window.start_training()
        window.worker.finished.connect(on_dpo_done)

    def on_dpo_done() -> None:
        window.training.charts.redraw()
        snap("dpo")
        window.close()
        app.quit()

    QTimer.singleShot(300, step_idle)
    app.exec()


if __name__ == "__main__":
    main(Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "docs")))
