"""The Runs tab with a thousand runs: opening, sorting, selecting and overlaying, cold and warm.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_runs.py [RUNS] [REPORTS]

Makes RUNS run folders (default 1,000) in a temporary folder, each as a real run leaves it: config.yaml,
metrics.jsonl with RunStarted, REPORTS step reports (default 300, a random count around it), a validation every
25 steps and Finished (some runs stopped, failed or cut short), adapters.safetensors and adapter_config.json,
two checkpoints, notes on some and an evaluation on some. Then times, in the window's Runs tab:
- cold: the first opening, when no run has its summary yet (every config.yaml and metrics.jsonl is read and
  each folder's summary.json written);
- warm: opening again (a new window, summaries kept), Refresh, sorting by every column;
- selecting one run (its curves drawn, its sample answers shown), two runs overlaid, and all of them (select all).
Target: opening and sorting 1,000 runs <= 1 s warm.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_runs(root: Path, count: int, reports: int, seed: int = 0) -> None:
    """`count` run folders under root, as real runs leave them (files named by RunFolder)."""
    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.events import Finished, RunStarted, StepReport, ValidationResult
    from qlora_gui.core.runs.run_folder import RunFolder

    rng = random.Random(seed)
    for i in range(count):
        run = RunFolder(root / f"2026{(i // 28) % 12 + 1:02d}{i % 28 + 1:02d}-{i:04d}-qwen-{i % 7}")
        run.checkpoints.mkdir(parents=True)
        cfg = TrainConfig(
            model=f"/models/Qwen2.5-{rng.choice(['0.5B', '1.5B', '3B'])}-Instruct",
            data=f"/data/set-{i % 13}.jsonl",
            adapter_path=str(run.path),
            learning_rate=rng.choice([1e-4, 2e-4, 5e-5]),
            batch_size=rng.choice([2, 4, 8]),
        )
        run.config.write_text(cfg.to_yaml())
        n = max(10, int(rng.gauss(reports, reports / 4)))
        loss = 3.0 + rng.random()
        started = RunStarted(str(run.path), cfg.to_dict(), 1_000_000, 500_000_000, 100, n, 0, 4000, 400, 0.1)
        lines = [started.to_json_line()]
        report = StepReport(0, 0, 0, 1e-4, 0, 1.5, 0, 0, 0, 1.2, 1.6, 0.3, 2.1).to_dict()  # filled in below
        validation = ValidationResult(0, 0, 20_000, False, 3.2).to_dict()
        for step in range(1, n + 1):
            loss = max(0.2, loss * 0.995 + rng.gauss(0, 0.02))
            report.update(
                step=step,
                epoch=step / 100,
                loss=loss,
                tokens_per_sec=950.0 + rng.random(),
                trained_tokens=10 * step,
                elapsed=step * 0.7,
                eta=(n - step) * 0.7,
            )
            lines.append(json.dumps(report) + "\n")
            if step % 25 == 0:
                validation.update(step=step, val_loss=loss + 0.1, is_best=step % 50 == 0)
                lines.append(json.dumps(validation) + "\n")
        fate = rng.random()
        if fate < 0.8:
            end = Finished(n, fate < 0.1, loss, loss + 0.1, loss + 0.05, None, str(run.path), n * 0.7)
            lines.append(end.to_json_line())
        run.metrics.write_text("".join(lines))
        run.adapter_config.write_text(json.dumps({"fine_tune_type": "lora", "num_layers": 16}))
        run.adapters.write_bytes(os.urandom(4096))  # a placeholder of the adapter weights
        for step in (n // 2, n):
            ck = run.checkpoint(step)
            ck.mkdir()
            for name in ("adapters.safetensors", "optimizer.safetensors"):
                (ck / name).write_bytes(b"\0" * 1024)
            (ck / "adapter_config.json").write_text("{}")
            (ck / "state.json").write_text(json.dumps({"step": step}))
        if i % 10 == 0:
            run.notes.write_text(f"run {i}: tried lr {cfg.learning_rate}\nmore notes\n")
        if i % 7 == 0:
            run.evaluation.write_text(
                json.dumps(
                    {
                        "results": [
                            {
                                "adapter": str(run.path),
                                "data": cfg.data,
                                "split": "test",
                                "rows": 400,
                                "tokens": 90_000,
                                "base_loss": 2.5,
                                "adapter_loss": loss,
                                "base_perplexity": 12.2,
                                "adapter_perplexity": 3.0,
                                "row_losses": [
                                    {"row": r, "loss": 1.0, "base_loss": 2.0, "tokens": 100} for r in range(400)
                                ],
                            }
                        ]
                    }
                )
            )


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    reports = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    tmp = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    root = tmp / "runs"
    t = timed(lambda: make_runs(root, count, reports))
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"{count} run folders, {size / 1e6:.0f} MB, made in {t:.1f} s under {root}")

    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from qlora_gui.core.runs.run_summary import list_runs
    from qlora_gui.ui.views.runs_view import RunsView

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    app = QApplication.instance() or QApplication([])

    cpu: dict[str, list[float]] = {"open": []}  # this process's CPU time: what the work costs, whatever the load

    def open_view() -> tuple[RunsView, float]:
        view = RunsView(root)
        view.resize(1280, 800)
        t0, c0 = time.perf_counter(), time.process_time()
        view.show()  # the first show reads the runs
        app.processEvents()
        cpu["open"].append(time.process_time() - c0)
        return view, time.perf_counter() - t0

    full = timed(lambda: list_runs(root, use_cache=False))
    view, cold = open_view()
    assert view.run_count() == count, view.run_count()
    view.close()
    listing = [timed(lambda: list_runs(root)) for _ in range(3)]
    opens = []
    for _ in range(3):
        view, t = open_view()
        opens.append(t)
        view.close()
    view, _ = open_view()
    refresh = [timed(lambda: (view.refresh(), app.processEvents())) for _ in range(3)]
    sorts = []
    for col in range(view.table.columnCount()):
        for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
            sorts.append(timed(lambda c=col, o=order: (view.table.sortItems(c, o), app.processEvents())))
    names = [view.table.topLevelItem(i).text(0) for i in range(view.run_count())]
    first_select = timed(lambda: (view.select_runs([names[0]]), app.processEvents()))
    again = timed(lambda: (view.select_runs([names[1]]), view.select_runs([names[0]]), app.processEvents())) / 2
    pair = timed(lambda: (view.select_runs(names[2:4]), app.processEvents()))
    everything = timed(lambda: (view.table.selectAll(), app.processEvents()))
    print(
        f"Listing {count} runs in the core: full parse {full:.2f} s; from the summaries "
        f"median {statistics.median(listing):.3f} s"
    )
    print(f"Runs tab, first opening (cold: no summaries yet): {cold:.2f} s")
    print(
        f"Runs tab, opening again (warm): median {statistics.median(opens):.3f} s "
        f"({', '.join(f'{x:.3f}' for x in opens)}; CPU median {statistics.median(cpu['open'][1:4]):.3f} s); "
        f"Refresh: median {statistics.median(refresh):.3f} s"
    )
    print(
        f"Sorting by each of {view.table.columnCount()} columns, both ways: "
        f"median {statistics.median(sorts) * 1000:.0f} ms, "
        f"max {max(sorts) * 1000:.0f} ms"
    )
    print(
        f"Selecting one run (curves + sample answers): first {first_select * 1000:.0f} ms, "
        f"again {again * 1000:.0f} ms; two overlaid: {pair * 1000:.0f} ms; select all {count}: "
        f"{everything * 1000:.0f} ms (drawn: {len(view.plotted)})"
    )
    view.close()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
