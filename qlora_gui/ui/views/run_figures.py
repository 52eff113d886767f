"""What the Runs tab shows of a run's losses and evaluations, and the job behind its Evaluate button."""

from __future__ import annotations

from pathlib import Path


def fmt_loss(x: float | None) -> str:
    return f"{x:.4f}" if x is not None else "–"


def evaluation_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        step = f"step {r['step']}" if r.get("step") is not None else "latest"
        parts = [
            f"{name} loss {r[key]:.4f} (perplexity {r[ppl]:.2f})"
            for name, key, ppl in (
                ("base", "base_loss", "base_perplexity"),
                ("adapter", "adapter_loss", "adapter_perplexity"),
            )
            if r.get(key) is not None and r.get(ppl) is not None
        ]
        if r.get("adapter_accuracy") is not None:  # preference pairs
            shares = [f"{r[k]:.0%}" for k in ("base_accuracy", "adapter_accuracy") if r.get(k) is not None]
            parts.append("chosen answer likelier in " + " → ".join(shares) + " of the pairs")
            if r.get("reward_accuracy") is not None:
                parts.append(f"DPO reward accuracy {r['reward_accuracy']:.0%}")
        if r.get("adapter_reward") is not None:  # GRPO's prompts: the mean reward of each side's answers
            rewards = [f"{r[k]:.3f}" for k in ("base_reward", "adapter_reward") if r.get(k) is not None]
            parts.append("mean reward " + " → ".join(rewards))
        what = (
            "all rows"
            if r.get("all_rows", True)
            else f"the {r.get('batches')} batches training validated on, so the adapter's loss is the run's "
            "validation loss for this checkpoint"
        )
        lines.append(
            f"{r['split']} split, {what} ({r['rows']} rows / {r['tokens']} tokens), {step}: " + " → ".join(parts)
        )
    return "\n".join(lines)


def eval_cell(results: list[dict]) -> str:
    if not results:
        return "–"
    r = results[-1]
    if r.get("adapter_reward") is not None:
        base_reward = r.get("base_reward")
        shown = f"{base_reward:.3f} → " if base_reward is not None else ""
        return f"reward {shown}{r['adapter_reward']:.3f}"
    base, adapter = r.get("base_loss"), r.get("adapter_loss")
    return f"{fmt_loss(base)} → {fmt_loss(adapter)}" if base is not None else fmt_loss(adapter)


def evaluate_run(run_dir: str):
    """The job behind 'Evaluate': the default checkpoint, the run's data and settings; saved in the run."""
    from ...core.after.evaluation import evaluate, save_evaluation
    from ...core.after.inference import default_adapter

    result = evaluate(adapter=default_adapter(run_dir), per_row=True)  # the hardest rows too
    save_evaluation(Path(run_dir), result)
    return result


MAX_COMPARED = 8  # beyond this many runs, each run's value would not fit on a line: only the names of the settings


def differences_text(names: list[str], diffs: dict[str, list]) -> str:
    """What the Runs tab says when several runs are selected: which settings differ, run by run."""
    head = f"{len(names)} runs selected (the actions act on one run: select one). "
    if not diffs:
        return head + "Their settings are the same."
    if len(names) > MAX_COMPARED:
        return (
            head + "Settings that differ: " + ", ".join(diffs) + f" (select {MAX_COMPARED} or fewer to see each run's)"
        )
    lines = [f"{key}: " + " | ".join("–" if v is None else str(v) for v in values) for key, values in diffs.items()]
    return head + "Settings that differ (" + " | ".join(names) + "):\n" + "\n".join(lines)


def last_row_losses(results: list[dict]) -> tuple[list, str]:
    """The per-row losses of the newest evaluation that has them, and what it measured."""
    from ...core.after.row_losses import RowLoss

    for r in reversed(results):
        if r.get("row_losses"):
            what = f"{r['split']} split, {r['rows']} rows, step {r.get('step')}"
            return [RowLoss(**x) for x in r["row_losses"]], what
    return [], ""
