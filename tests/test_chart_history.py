"""The live charts of a long run hold a bounded number of points: the last stretch report by report, older
reports merged (peaks kept), the smoothed loss over every report; an unchanged memory plot is not laid out again."""

from __future__ import annotations

from qlora_gui.core.events import StepReport
from qlora_gui.ui.widgets.chart_history import MAX, MEAN, ChartHistory


def report(step: int, loss: float, peak: float = 0.2) -> StepReport:
    return StepReport(step, step / 100, loss, 1e-4, 100.0, 1.0, step * 10, step, 0.0, 0.1, peak, 0.0, 0.3)


def test_a_long_history_stays_bounded_exact_at_its_end_and_keeps_its_peaks():
    history = ChartHistory({"step": MEAN, "value": MEAN, "peak": MAX}, capacity=400, recent=100)
    sizes = []
    for step in range(1, 10_001):
        history.append((step, float(step % 7), 9.0 if step == 1234 else 1.0))
        sizes.append(len(history))
    assert max(sizes) <= 401 and min(sizes[400:]) >= 100 + 150
    assert history["step"][-100:] == list(range(9901, 10_001))  # the last stretch: every report
    assert history["value"][-100:] == [float(s % 7) for s in range(9901, 10_001)]
    assert max(history["peak"]) == 9.0  # a spike long ago survives the merging
    steps = history["step"]
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))
    older = steps[: -100 - 1]  # evenly spaced: each row the mean of `stride` consecutive steps
    spacing = {b - a for a, b in zip(older, older[1:], strict=False)}
    assert older[0] == (1 + history.stride) / 2 and spacing == {history.stride}
    history.keep_up_to(5000)
    assert history["step"] and max(history["step"]) <= 5000


def test_the_charts_of_a_long_run_hold_a_bounded_number_of_points(qtbot):
    from qlora_gui.ui.widgets.charts import SMOOTHING, TrainingCharts

    charts = TrainingCharts()
    qtbot.addWidget(charts)
    charts.show()
    losses = [2.0 + (s % 10) / 10 for s in range(1, 20_001)]
    for step, loss in enumerate(losses, start=1):
        charts.add_progress(report(step, loss))
    charts.redraw()
    xs, ys = charts.loss_raw.getData()
    assert charts.point_count() <= charts.history.capacity
    assert list(xs[-500:]) == list(range(19_501, 20_001)) and list(ys[-500:]) == losses[-500:]
    ema = None
    for loss in losses:
        ema = loss if ema is None else SMOOTHING * loss + (1 - SMOOTHING) * ema
    assert charts.loss_smooth.getData()[1][-1] == ema  # smoothed over every report, not the points kept


def test_a_redraw_that_changes_nothing_on_the_memory_plot_does_not_lay_it_out_again(qtbot, monkeypatch):
    from qlora_gui.ui.widgets.charts import TrainingCharts

    charts = TrainingCharts()
    qtbot.addWidget(charts)
    charts.show()
    charts.set_memory_limit(8.0)
    calls = []
    monkeypatch.setattr(charts.mem_plot, "setTitle", lambda *a, **k: calls.append("title"))
    monkeypatch.setattr(charts.mem_plot, "setYRange", lambda *a, **k: calls.append("range"))
    charts.add_progress(report(1, 2.0))
    charts.redraw()
    assert calls == ["title", "range"]
    for step in range(2, 6):  # the same memory each step: nothing to move on that plot
        charts.add_progress(report(step, 2.0))
        charts.redraw()
    assert calls == ["title", "range"]
    charts.add_progress(report(6, 2.0, peak=4.0))
    charts.redraw()
    assert calls == ["title", "range"] * 2
