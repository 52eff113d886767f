"""The app's responsiveness while it trains, and how fast it starts.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py [STEPS] [ROWS]

- GUI-thread latency: a 10 ms QTimer runs while the window trains the demo model on a ROWS-row dataset
  (default 100,000; 0 for the sample data); latency is how late each tick fires, during training and,
  apart, while the run loads. Target during training: p99 < 30 ms, max < 100 ms.
- Launch to window: a fresh process, from exec to the main window shown and painted.
- Start to first step: from pressing Start (model not yet loaded) to the first step report.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Run as the app runs: with OpenBLAS on Linux when it is installed, one core left for the UI.
from qlora_gui.core.blas import openblas_env  # noqa: E402

_env = openblas_env(gui=True)
if _env is not None:
    os.execve(sys.executable, [sys.executable, *sys.argv], _env)

LAUNCH = r"""
import sys, time, tempfile
t0 = float(sys.argv[1])
from PySide6.QtCore import QSettings, QTimer
QSettings.setDefaultFormat(QSettings.Format.IniFormat)
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp())
from qlora_gui.ui.app import create_app
app = create_app()
from qlora_gui.ui.main_window import MainWindow
w = MainWindow(runs_root=tempfile.mkdtemp())
w.show()
def shown():
    w.grab()  # forces a full paint
    print(time.time() - t0, flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def launch_times(n: int = 3) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        res = subprocess.run(
            [sys.executable, "-c", LAUNCH, str(t0)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
        )
        out.append(float(res.stdout.strip().splitlines()[-1]))
    return out


def big_dataset(folder: Path, rows: int) -> Path:
    """A prompt/completion file of `rows` rows made from the sample data (WikiSQL), for a loaded window."""
    from qlora_gui.core.resources import sample_data_path

    sample = [json.loads(line) for line in sample_data_path().read_text().splitlines() if line.strip()]
    path = folder / f"wikisql-{rows}.jsonl"
    with path.open("w") as f:
        for i in range(rows):
            f.write(json.dumps(sample[i % len(sample)]) + "\n")
    return path


def training_latency(steps: int, rows: int) -> dict:
    """Ticks of a 10 ms timer on the GUI thread while the window trains on a `rows`-row dataset (0: the sample
    data). Loading (start to first step report) and training are measured apart."""
    from PySide6.QtCore import QSettings, QTimer

    from qlora_gui.core.events import Failed, Finished, StepReport
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model
    from qlora_gui.core.resources import sample_data_path
    from qlora_gui.ui.app import create_app

    tmp = Path(tempfile.mkdtemp())
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    app = create_app()
    from qlora_gui.ui.main_window import MainWindow

    model = build_demo_model(tmp / "demo", DemoModelSpec(hidden_size=128, num_layers=4, vocab_size=768))
    data = big_dataset(tmp, rows) if rows else sample_data_path()
    w = MainWindow(runs_root=tmp / "runs")
    w.resize(1280, 800)
    w.show()
    w.model.select_path(str(model))
    cfg = w.settings_panel.config()
    cfg.iters, cfg.steps_per_report, cfg.steps_per_eval, cfg.save_every = steps, 1, 50, 50
    cfg.num_layers, cfg.batch_size, cfg.learning_rate = 4, 4, 1e-3
    w.settings_panel.set_config(cfg)
    result: dict = {"checking": [], "loading": [], "training": []}
    last = [0.0]
    timer = QTimer()
    timer.setInterval(10)

    def tick():
        now = time.perf_counter()
        if last[0]:
            lateness = (now - last[0]) * 1000 - 10
            phase = "training" if "first_step" in result else "loading" if "t_start" in result else "checking"
            result[phase].append(lateness)
            if lateness > 30:
                result.setdefault("late", []).append((now, phase, lateness))
        last[0] = now

    timer.timeout.connect(tick)

    def on_report():
        if w.dataset.checking or "t_start" in result:
            return
        if not w.dataset.usable:
            print("data not usable:", w.dataset.report and w.dataset.report.problem_lines())
            app.quit()
            return
        result["t_start"] = time.perf_counter()
        w.start_training()  # switches to the Train tab, whose charts redraw live
        result["config"] = w.worker.config
        w.worker.event.connect(on_event)

    def on_event(e):
        if isinstance(e, StepReport):
            result.setdefault("first_step", time.perf_counter() - result["t_start"])
            result.setdefault("gui_tok_s", []).append(e.tokens_per_sec)
        elif isinstance(e, (Finished, Failed)):
            if isinstance(e, Failed):
                print("run failed:", e.message)
            timer.stop()
            app.quit()

    w.dataset.report_changed.connect(on_report)
    timer.start()  # from the moment the dataset is opened: checking it must not block the window either
    w.open_dataset(data)
    app.exec()
    w.worker and w.worker.wait()
    result["headless_tok_s"] = headless_tok_s(result["config"], tmp / "headless")
    return result


def headless_tok_s(cfg, run_dir: Path) -> list[float]:
    """The same settings straight through the core Trainer, no Qt in the loop."""
    import dataclasses

    from qlora_gui.core.events import StepReport
    from qlora_gui.core.train.trainer import Trainer

    rates: list[float] = []
    Trainer(
        dataclasses.replace(cfg, adapter_path=str(run_dir)),
        lambda e: isinstance(e, StepReport) and rates.append(e.tokens_per_sec),
    ).run()
    return rates


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    r = training_latency(steps, rows)
    lat, load = r["training"], r["loading"]
    launches = launch_times()
    print(f"GUI thread, 10 ms timer, {steps}-step run on {rows or 'the sample'} rows:")
    print(
        f"  training ({len(lat)} ticks): p50 {percentile(lat, 0.5):.1f} ms   p99 {percentile(lat, 0.99):.1f} ms   "
        f"max {max(lat):.1f} ms"
    )
    for name, ticks in (("checking the dataset", r["checking"]), ("start to first step", load)):
        if ticks:
            print(f"  {name} ({len(ticks)} ticks): p99 {percentile(ticks, 0.99):.1f} ms   max {max(ticks):.1f} ms")
    gui, head = statistics.mean(r["gui_tok_s"][1:]), statistics.mean(r["headless_tok_s"][1:])
    print(f"Trained tokens/s, GUI-driven {gui:.0f} vs headless {head:.0f}: ratio {gui / head:.3f}")
    print(f"Start to first step (demo model, loading included): {r['first_step']:.2f} s")
    print(
        f"Launch to window shown: median {statistics.median(launches):.2f} s "
        f"(runs: {', '.join(f'{x:.2f}' for x in launches)})"
    )


if __name__ == "__main__":
    main()
