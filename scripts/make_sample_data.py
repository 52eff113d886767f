"""Write the sample preference pairs and GRPO prompts (qlora_gui/resources/sample_data/) from the sample SQL rows.

Each row of `sql_completions.jsonl` becomes a preference pair in `sql_preferences.jsonl`: the prompt, its correct
SQL as the chosen answer, and a plausible wrong query as the rejected one (another column selected, the condition on
another column, or a COUNT added or dropped), picked by a fixed seed so the file is the same on every run. And a
GRPO row in `sql_prompts.jsonl`: the prompt and its SQL as the reference answer a built-in reward compares with.

    .venv/bin/python scripts/make_sample_data.py
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "qlora_gui" / "resources" / "sample_data"
SQL = re.compile(r"^ SELECT (?P<agg>(?:COUNT|MAX|MIN|AVG|SUM) )?(?P<col>.+?) FROM (?P<table>\S+)(?P<rest>.*)$")
WHERE = re.compile(r"^ WHERE (?P<col>.+?) = (?P<value>.+)$")


def columns_of(prompt: str) -> list[str]:
    line = next((x for x in prompt.splitlines() if x.startswith("columns: ")), "columns: ")
    return [c.strip() for c in line[len("columns: ") :].split(",") if c.strip()]


def wrong_query(sql: str, columns: list[str], rng: random.Random) -> str | None:
    """A query that reads well but answers another question; None when the row offers no such change."""
    m = SQL.match(sql)
    if not m:
        return None
    agg, col, table, rest = m.group("agg") or "", m.group("col"), m.group("table"), m.group("rest")
    where = WHERE.match(rest)
    others = [c for c in columns if c != col and (not where or c != where.group("col"))]
    changes = []
    if others:
        changes.append(lambda: f" SELECT {agg}{rng.choice(others)} FROM {table}{rest}")
    if where and others:
        changes.append(lambda: f" SELECT {agg}{col} FROM {table} WHERE {rng.choice(others)} = {where.group('value')}")
    changes.append(lambda: f" SELECT {'' if agg else 'COUNT '}{col} FROM {table}{rest}")
    return rng.choice(changes)()


def main() -> int:
    rng = random.Random(0)
    rows = [json.loads(x) for x in (SAMPLES / "sql_completions.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for row in rows:
        rejected = wrong_query(row["completion"], columns_of(row["prompt"]), rng)
        if rejected and rejected != row["completion"]:
            out.append({"prompt": row["prompt"], "chosen": row["completion"], "rejected": rejected})
    path = SAMPLES / "sql_preferences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    print(f"{path}: {len(out)} pairs from {len(rows)} rows")
    prompts = [{"prompt": row["prompt"], "answer": row["completion"].strip()} for row in rows]
    path = SAMPLES / "sql_prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in prompts), encoding="utf-8")
    print(f"{path}: {len(prompts)} prompts with their reference answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
