"""A long run in the window: does anything grow that should not?

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/soak.py [--steps 20000] [--every 500] [--report-every 1]

Trains the demo model for --steps steps in the real main window (offscreen) with its real training worker,
reporting every --report-every steps (1: the most a run can report). Every --every steps it records, on the GUI
thread: the process's RSS, MLX's active and cache memory (as the step report measured them), the size of
metrics.jsonl, and the points the live charts hold and the bytes they take. A 10 ms timer on the GUI thread
measures how late each tick fires; its p99 over the first tenth of the run after warm-up (steps S/10 to 2S/10)
is compared with the last tenth. At the end, the run is reopened in a new Runs tab: opening it and selecting the
run (its curves drawn), without its summary and with it. Targets: RSS and MLX memory grow <= 5% from step 1,000
(or S/10) to the end; the charts' points bounded; GUI p99 at the end no worse than at the start; reopening the run
<= 2 s. Writes the samples as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qlora_gui.core.blas import openblas_env  # noqa: E402

_env = openblas_env(gui=True)  # as the app runs: one core left for the window
if _env is not None:
    os.execve(sys.executable, [sys.executable, *sys.argv], _env)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**3


def list_bytes(columns: list[list]) -> int:
    """What Python lists of floats take: the lists and the float objects in them."""
    return sum(sys.getsizeof(c) + sum(sys.getsizeof(v) for v in c) for c in columns)


def chart_bytes(charts) -> int:
    h = charts.history
    return list_bytes([h[name] for name in h.names] + [charts.val_steps, charts.val_losses])


def soak(steps: int, every: int, report_every: int) -> dict:
    from PySide6.QtCore import QSettings, QTimer

    from qlora_gui.core.events import Failed, Finished, StepReport
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model
    from qlora_gui.core.resources import sample_data_path
    from qlora_gui.core.runs.run_folder import RunFolder
    from qlora_gui.ui.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    app = create_app()
    from qlora_gui.ui.main_window import MainWindow

    model = build_demo_model(tmp / "demo", DemoModelSpec())
    w = MainWindow(runs_root=tmp / "runs")
    w.resize(1280, 800)
    w.show()
    w.model.select_path(str(model))
    cfg = w.settings_panel.config()
    cfg.iters, cfg.steps_per_report, cfg.steps_per_eval, cfg.val_batches = steps, report_every, 1000, 2
    cfg.save_every, cfg.keep_last, cfg.sample_answers = 2000, 2, 0
    cfg.num_layers, cfg.batch_size, cfg.max_seq_length, cfg.learning_rate = 2, 2, 128, 1e-4
    w.settings_panel.set_config(cfg)
    out: dict = {"steps": steps, "every": every, "report_every": report_every, "samples": []}
    state = {"step": 0, "last": 0.0, "next_sample": every}
    timer = QTimer()
    timer.setInterval(10)
    # The ticks of the two windows compared, in flat arrays: a list of (step, lateness) tuples for every tick of
    # the run was itself about 0.4 MiB of RSS per 1,000 steps (100 ticks a second, ~100 bytes each).
    tenth = max(steps // 10, 1)
    windows = {"start": (tenth, 2 * tenth), "end": (steps - tenth, steps + 1)}
    ticks = {name: array("d") for name in windows}

    # Each chart redraw's CPU time on the GUI thread, in the same windows: what a redraw costs, whatever the load
    # (lateness and CPU per step also grow when other work slows the run, since redraws come 4 times a second).
    redraws = {name: array("d") for name in windows}
    charts = w.training.charts
    plain_redraw = charts.redraw

    def timed_redraw() -> None:
        t0 = time.thread_time()
        plain_redraw()
        for name, (a, b) in windows.items():
            if a <= state["step"] < b:
                redraws[name].append((time.thread_time() - t0) * 1000)

    charts.redraw = timed_redraw
    charts._timer.timeout.disconnect(plain_redraw)  # the charts' 4-a-second timer calls the timed one
    charts._timer.timeout.connect(timed_redraw)

    def tick():
        now = time.perf_counter()
        if state["last"] and state["step"]:
            for name, (a, b) in windows.items():
                if a <= state["step"] < b:
                    ticks[name].append((now - state["last"]) * 1000 - 10)
        state["last"] = now

    timer.timeout.connect(tick)

    def sample(e: StepReport) -> None:
        charts = w.training.charts
        metrics = RunFolder(w.worker.config.adapter_path).metrics
        out["samples"].append(
            {
                "step": e.step,
                "rss_gb": rss_gb(),
                "mlx_active_gb": e.mlx_active_gb,
                "mlx_cache_gb": e.mlx_cache_gb,
                "metrics_bytes": metrics.stat().st_size,
                "chart_points": charts.point_count(),
                "chart_bytes": chart_bytes(charts),
                "log_lines": w.training.log.blockCount(),
                "seconds": time.perf_counter() - out["t_start"],
                "gui_cpu_s": time.thread_time(),  # the GUI thread's own CPU time: its work, whatever the load
            }
        )
        s = out["samples"][-1]
        print(
            f"step {s['step']:6d}  RSS {s['rss_gb']:.3f} GB  MLX {s['mlx_active_gb'] + s['mlx_cache_gb']:.4f} GB  "
            f"metrics {s['metrics_bytes'] / 1e6:.2f} MB  chart points {s['chart_points']}  "
            f"({s['chart_bytes'] / 1e6:.2f} MB)  {s['seconds']:.0f} s",
            flush=True,
        )

    def on_event(e):
        if isinstance(e, StepReport):
            state["step"] = e.step
            if e.step >= state["next_sample"] or e.step == report_every:
                sample(e)
                state["next_sample"] = (e.step // every + 1) * every
        elif isinstance(e, (Finished, Failed)):
            out["end"] = e.message if isinstance(e, Failed) else f"finished at step {e.step}"
            out["run_dir"] = w.worker.config.adapter_path
            timer.stop()
            app.quit()

    def on_report():
        if w.dataset.checking or "t_start" in out:
            return
        out["t_start"] = time.perf_counter()
        w.start_training()
        w.worker.event.connect(on_event)

    w.dataset.report_changed.connect(on_report)
    timer.start()
    w.open_dataset(sample_data_path())
    app.exec()
    w.worker and w.worker.wait()
    out["ticks"] = {name: list(values) for name, values in ticks.items()}
    out["redraw_cpu_ms"] = {name: list(values) for name, values in redraws.items()}
    out["reopen"] = reopen(Path(out["run_dir"]), app)
    return out


def reopen(run_dir: Path, app) -> dict:
    """A new Runs tab on the run's folder: shown (the table read) and the run selected (its curves drawn)."""
    from qlora_gui.core.runs.run_folder import RunFolder
    from qlora_gui.ui.views.runs_view import RunsView

    times = {}
    for case in ("cold", "warm"):
        if case == "cold":
            RunFolder(run_dir).summary.unlink(missing_ok=True)
        t0 = time.perf_counter()
        view = RunsView(run_dir.parent)
        view.show()
        app.processEvents()
        view.select_runs([run_dir.name])
        app.processEvents()
        times[case] = time.perf_counter() - t0
        times["points"] = len(view.plot.readings.curves(run_dir).steps)
        view.close()
    return times


def growth(samples: list[dict], key, from_step: int) -> tuple[float, float, float]:
    ref = next(s for s in samples if s["step"] >= from_step)
    first, last = key(ref), key(samples[-1])
    return first, last, (last - first) / first if first else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--report-every", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    r = soak(args.steps, args.every, args.report_every)
    if args.out:
        args.out.write_text(json.dumps(r))
    samples, steps = r["samples"], args.steps
    tenth = max(steps // 10, 1)
    warm = min(1000, tenth)
    print(f"\n{r.get('end')}: {steps} steps, reports every {args.report_every}, in {samples[-1]['seconds']:.0f} s")
    for name, key in (
        ("RSS", lambda s: s["rss_gb"]),
        ("MLX active + cache", lambda s: s["mlx_active_gb"] + s["mlx_cache_gb"]),
    ):
        first, last, g = growth(samples, key, warm)
        print(f"{name}: {first:.4f} GB at step {warm} -> {last:.4f} GB at the end: {g:+.1%}")
    last = samples[-1]
    print(
        f"metrics.jsonl: {last['metrics_bytes'] / 1e6:.2f} MB ({last['metrics_bytes'] / max(last['step'], 1):.0f} "
        f"bytes per step); charts: {last['chart_points']} points, {last['chart_bytes'] / 1e6:.2f} MB "
        f"(max over the run {max(s['chart_points'] for s in samples)} points)"
    )
    start, end = r["ticks"]["start"], r["ticks"]["end"]
    print(
        f"GUI thread, 10 ms timer lateness p99: steps {tenth}-{2 * tenth} {percentile(start, 0.99):.1f} ms "
        f"({len(start)} ticks), last {tenth} steps {percentile(end, 0.99):.1f} ms ({len(end)} ticks)"
    )
    by_step = {s["step"]: s for s in samples}
    window = [(tenth, 2 * tenth), (steps - tenth, steps)]
    if all(a in by_step and b in by_step for a, b in window):
        cpu = [(by_step[b]["gui_cpu_s"] - by_step[a]["gui_cpu_s"]) / (b - a) * 1000 for a, b in window]
        print(f"GUI thread CPU per step: steps {tenth}-{2 * tenth} {cpu[0]:.2f} ms, last {tenth} steps {cpu[1]:.2f} ms")
        rate = [(b - a) / (by_step[b]["seconds"] - by_step[a]["seconds"]) for a, b in window]
        print(f"training: steps {tenth}-{2 * tenth} {rate[0]:.1f} steps/s, last {tenth} steps {rate[1]:.1f} steps/s")
    draws = [r["redraw_cpu_ms"]["start"], r["redraw_cpu_ms"]["end"]]
    print(
        f"chart redraw, GUI thread CPU median / p99: steps {tenth}-{2 * tenth} {percentile(draws[0], 0.5):.1f} / "
        f"{percentile(draws[0], 0.99):.1f} ms ({len(draws[0])} redraws), last {tenth} steps "
        f"{percentile(draws[1], 0.5):.1f} / {percentile(draws[1], 0.99):.1f} ms ({len(draws[1])} redraws)"
    )
    ro = r["reopen"]
    print(
        f"Reopening the run in the Runs tab (shown + selected, {ro['points']} points): "
        f"{ro['cold']:.2f} s without its summary, {ro['warm']:.2f} s with it"
    )


if __name__ == "__main__":
    main()
