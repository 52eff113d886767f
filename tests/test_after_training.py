"""After training: generation with and without the adapter, evaluation, fusing and the CLI for them.

One QLoRA run (4-bit on load) teaches the tiny model to answer every prompt with
the same SQL; the tests below use that run.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from conftest import close, fixture_texts, tiny_config, write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.after.evaluation import evaluate, read_evaluations, save_evaluation
from qlora_gui.core.after.fuse import fuse_adapter, gguf_support
from qlora_gui.core.errors import UserError
from qlora_gui.core.events import ValidationResult
from qlora_gui.core.inference.adapters import (
    adapter_layers,
    base_view,
    default_adapter,
    load_with_adapter,
    read_adapter,
)
from qlora_gui.core.inference.generation import SamplingSettings, format_prompt, generate_side_by_side, stream_text
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train.trainer import Trainer

pytestmark = pytest.mark.slow  # end-to-end: a trained run, then everything done with it

ANSWER = "select name from table"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_model):
    """(run folder, final validation loss) of a 4-bit QLoRA run on constant-answer data."""
    root = tmp_path_factory.mktemp("after")
    rows = [{"prompt": t, "completion": ANSWER} for t in fixture_texts(48, seed=5)]
    data = write_jsonl(root / "pc.jsonl", rows)
    cfg = tiny_config(
        demo_model,
        data,
        root / "run",
        learning_rate=3e-3,
        iters=100,
        steps_per_report=10,
        steps_per_eval=50,
        quantize_bits=4,
        quantize_group_size=32,
        mask_prompt=True,
        lora_parameters={"rank": 8, "scale": 10.0, "dropout": 0.0},
    )
    events = []
    Trainer(cfg, events.append).run()
    vals = [e for e in events if isinstance(e, ValidationResult)]
    return root / "run", vals[-1].val_loss


def learned(text: str) -> bool:
    """The tiny model learns the answer's words, if not always its first word or where to stop."""
    return "name from table" in text


def greedy(max_tokens=12):
    return SamplingSettings(temperature=0.0, max_tokens=max_tokens)


def collect(model, tokenizer, prompt, settings, **kw):
    updates = []
    texts = generate_side_by_side(model, tokenizer, prompt, settings, updates.append, **kw)
    return texts, updates


# ------------------------------------------------------------------ generation


def test_the_adapter_answers_as_trained_and_the_base_does_not(trained):
    run, _ = trained
    adapter = default_adapter(run)
    assert adapter.step == 100  # the best checkpoint is the default
    loaded = load_with_adapter(None, adapter)
    prompt = format_prompt(loaded.tokenizer, "how many city in the team")
    texts, updates = collect(loaded.model, loaded.tokenizer, prompt, greedy())
    assert learned(texts["adapter"]) and not learned(texts["base"])
    done = {u.side: u for u in updates if u.done}
    assert set(done) == {"base", "adapter"}
    assert done["base"].finish_reason == "length" and done["base"].tokens == 12
    assert done["adapter"].tokens_per_sec > 0


def test_the_base_side_is_the_base_model_alone(trained, demo_model):
    run, _ = trained
    with_adapter = load_with_adapter(None, default_adapter(run))
    prompt = format_prompt(with_adapter.tokenizer, "list the score")
    texts, _ = collect(with_adapter.model, with_adapter.tokenizer, prompt, greedy())
    # the base as trained on: the same 4-bit quantization, no adapter at all
    from qlora_gui.core.model.loader import load_base

    base = load_base(demo_model, 4, 32)
    alone = "".join(u.text for u in stream_text(base.model, base.tokenizer, prompt, greedy(), "base"))
    assert texts["base"] == alone
    ids = mx.array([with_adapter.tokenizer.encode(prompt)])
    with base_view(with_adapter.model):
        viewed = with_adapter.model(ids)
    assert mx.array_equal(viewed, base.model(ids))
    assert not mx.array_equal(with_adapter.model(ids), viewed)  # and the view was undone


def test_sampling_is_seeded_per_side(trained):
    loaded = load_with_adapter(None, default_adapter(trained[0]))
    prompt = format_prompt(loaded.tokenizer, "what year")
    hot = SamplingSettings(temperature=1.5, top_p=0.9, max_tokens=10, seed=7)
    pair, _ = collect(loaded.model, loaded.tokenizer, prompt, hot)
    alone, _ = collect(loaded.model, loaded.tokenizer, prompt, hot, sides=("base",))
    assert pair["base"] == alone["base"]  # running beside the adapter does not change the base's draws
    other, _ = collect(loaded.model, loaded.tokenizer, prompt, SamplingSettings(1.5, 0.9, 10, seed=8), sides=("base",))
    assert other["base"] != alone["base"]


def test_stop_ends_both_sides_mid_generation(trained):
    loaded = load_with_adapter(None, default_adapter(trained[0]))
    prompt = format_prompt(loaded.tokenizer, "show the player")
    seen = []

    def on_update(u):
        seen.append(u)

    generate_side_by_side(
        loaded.model, loaded.tokenizer, prompt, greedy(200), on_update, should_stop=lambda: len(seen) >= 6
    )
    done = [u for u in seen if u.done]
    assert sorted(u.side for u in done) == ["adapter", "base"]
    assert all(u.finish_reason == "stopped" and 0 < u.tokens < 200 for u in done)
    assert len(adapter_layers(loaded.model)) == 14  # stopping inside the base's turn left the adapter in place


def test_text_runs_get_a_raw_prompt_and_chat_runs_the_template(trained, tokenizer):
    assert read_adapter(trained[0]).uses_template
    assert format_prompt(tokenizer, "hi", use_template=False) == "hi"
    templated = format_prompt(tokenizer, "hi", system="be brief")
    assert templated.startswith("<s><|system|>\nbe brief") and templated.endswith("<|assistant|>\n")


def test_a_folder_that_is_not_an_adapter_says_what_to_give(tmp_path, trained):
    with pytest.raises(UserError, match="no adapters.safetensors or adapter_config.json"):
        read_adapter(tmp_path)
    with pytest.raises(UserError, match="no such adapter folder"):
        read_adapter(tmp_path / "missing")


# ------------------------------------------------------------------ evaluation


def test_evaluation_equals_the_trainers_validation_loss(trained):
    run, val_loss = trained
    result = evaluate(adapter=read_adapter(run))  # the run's data, split and settings
    assert result.split == "valid" and result.rows == 5  # 10% of 48 rows held out
    assert result.adapter_loss == pytest.approx(val_loss, abs=close(1e-6))
    assert result.base_loss > result.adapter_loss + 1.0
    assert result.adapter_ppl == pytest.approx(np.exp(result.adapter_loss))
    path = save_evaluation(run, result)
    assert path.name == RunFolder.EVALUATION
    save_evaluation(run, result)  # the same adapter, data and split replace the earlier entry
    saved = read_evaluations(run)
    assert len(saved) == 1 and saved[0]["adapter_loss"] == pytest.approx(val_loss, abs=close(1e-6))


def test_each_rows_own_loss_adds_up_to_the_evaluation_and_ranks_the_hardest(trained):
    from qlora_gui.core.after.row_losses import hardest, rows_text

    run, _ = trained
    result = evaluate(adapter=read_adapter(run), per_row=True)
    rows = result.row_details()
    assert len(rows) == result.rows == 5 and sum(r.tokens for r in rows) == result.tokens
    for side in ("base", "adapter"):  # the token-weighted mean of the rows is the evaluation's loss
        mean = sum(getattr(r, f"{side}_loss") * r.tokens for r in rows) / result.tokens
        assert mean == pytest.approx(getattr(result, f"{side}_loss"), rel=close(1e-5))
    assert len({r.base_loss for r in rows}) > 1 and all(r.text for r in rows) and all(r.line > 0 for r in rows)
    highest, least = hardest(rows, 3)
    assert [r.adapter_loss for r in highest] == sorted((r.adapter_loss for r in rows), reverse=True)[:3]
    assert [r.gain for r in least] == sorted(r.gain for r in rows)[:3]
    assert "Highest adapter loss (3 of 5 rows)" in rows_text(rows, 3)
    saved = json.loads(json.dumps(result.to_dict()))  # kept in evaluation.json with the rest
    assert len(saved["row_losses"]) == 5


def test_evaluation_measures_the_runs_validation_batches_unless_asked_for_more(tmp_path, demo_model):
    """A run that validated on 1 of 3 batches: Evaluate on its best checkpoint gives the run's best
    validation loss; all rows, or the test split, are explicit choices and say so."""
    from qlora_gui.core.inference.adapters import default_adapter

    folder = tmp_path / "d"
    rows = [{"prompt": t, "completion": ANSWER} for t in fixture_texts(40, seed=9)]
    write_jsonl(folder / "train.jsonl", rows[:24])
    write_jsonl(folder / "valid.jsonl", rows[24:36])
    write_jsonl(folder / "test.jsonl", rows[36:])
    cfg = tiny_config(
        demo_model,
        folder,
        tmp_path / "run",
        learning_rate=3e-3,
        iters=12,
        steps_per_report=10,
        steps_per_eval=4,
        val_batches=1,
        mask_prompt=True,
    )
    events = []
    Trainer(cfg, events.append).run()
    best = min((e for e in events if isinstance(e, ValidationResult)), key=lambda e: e.val_loss)
    adapter = default_adapter(tmp_path / "run")
    assert adapter.step == best.step
    result = evaluate(adapter=adapter, include_base=False)
    assert result.split == "valid" and not result.all_rows and result.batches == 1 and result.rows == 4
    assert result.adapter_loss == pytest.approx(best.val_loss, abs=close(1e-6))
    assert result.measured().startswith("valid split, the 1 batches training validated on: 4 rows")
    every = evaluate(adapter=adapter, include_base=False, max_batches=-1)
    assert every.all_rows and every.rows == 12 and every.measured().startswith("valid split, all rows: 12 rows")
    test = evaluate(adapter=adapter, include_base=False, split="test")
    assert test.split == "test" and test.rows == 4 and test.all_rows
    with pytest.raises(UserError, match="no test split"):
        evaluate(adapter=adapter, data=str(tmp_path / "d" / "train.jsonl"), split="test")


# ------------------------------------------------------------------ fuse


def _logits(model, tokenizer, text="how many team in the city"):
    return model(mx.array([tokenizer.encode(text)])).astype(mx.float32)


def test_dequantized_fuse_matches_base_plus_adapter_and_exports_gguf(tmp_path, trained):
    from mlx_lm import load

    adapter = default_adapter(trained[0])
    steps = []
    result = fuse_adapter(
        adapter, tmp_path / "fused", dequantize=True, export_gguf=True, progress=lambda f, m: steps.append(f)
    )
    assert steps[-1] == 1.0 and steps == sorted(steps)
    assert result.quantization is None and result.fused_layers == 14
    fused, tok = load(str(result.path))
    assert "quantization" not in json.loads((result.path / "config.json").read_text())
    reference = load_with_adapter(None, adapter)
    diff = mx.abs(_logits(fused, tok) - _logits(reference.model, reference.tokenizer)).max().item()
    assert diff < close(1e-4)  # float rounding only
    from gguf import GGUFReader

    assert result.gguf == result.path / "fused-F16.gguf"  # our writer: the type in the name is the tensors' type
    types = {t.name: t.tensor_type.name for t in GGUFReader(result.gguf).tensors}
    assert types["token_embd.weight"] == types["blk.0.attn_q.weight"] == "F16" and not list(tmp_path.glob(".fused.*"))


def test_quantized_fuse_stays_4_bit_and_close(tmp_path, trained, demo_model):
    """Tolerance: re-quantizing W + delta may move the logits by less, on average, than quantizing
    the base to 4 bits did in the first place. A trained adapter is confident, so one position can
    move its next-token distribution by 0.2 nats while the rest barely move: the KL is pooled over
    the positions of three prompts, median below 0.01 nats and mean below 0.05."""
    from mlx_lm import load

    from qlora_gui.core.model.loader import load_base

    adapter = default_adapter(trained[0])
    result = fuse_adapter(adapter, tmp_path / "fused4")
    assert result.quantization == {"bits": 4, "group_size": 32}
    fused, tok = load(str(result.path))
    reference = load_with_adapter(None, adapter)
    full, four_bit = load_base(demo_model), load_base(demo_model, 4, 32)
    kls, same = [], []
    for text in ("how many team in the city", "what is the name of the team", "list the players and the score"):
        a, b = _logits(fused, tok, text), _logits(reference.model, reference.tokenizer, text)
        quantization_error = mx.abs(_logits(full.model, tok, text) - _logits(four_bit.model, tok, text)).mean()
        assert mx.abs(a - b).mean().item() < quantization_error.item()
        pa, pb = mx.softmax(a, -1), mx.softmax(b, -1)
        kls.extend((pb * (mx.log(pb) - mx.log(pa))).sum(-1).reshape(-1).tolist())
        same.extend((mx.argmax(a, -1) == mx.argmax(b, -1)).reshape(-1).tolist())
    assert np.median(kls) < 0.01 and np.mean(kls) < 0.05
    assert np.mean(same) >= 0.9


def test_fuse_never_overwrites_and_refuses_gguf_it_cannot_write(tmp_path, trained):
    adapter = default_adapter(trained[0])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        fuse_adapter(adapter, taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="16-bit"):
        fuse_adapter(adapter, tmp_path / "g", export_gguf=True)  # a 4-bit base needs --dequantize
    assert not (tmp_path / "g").exists()
    assert gguf_support("qwen2") is None and gguf_support("llama") is None and "mixtral" in gguf_support("mixtral")


# ------------------------------------------------------------------ CLI


def test_cli_generate_evaluate_and_fuse(tmp_path, trained, demo_model, capsys):
    run, val_loss = trained
    assert (
        main(["generate", "--adapter-path", str(run), "--prompt", "what city", "--temp", "0", "--max-tokens", "8"]) == 0
    )
    out = capsys.readouterr()
    # Trained on the answer and its end-of-turn token only, it answers and stops before max tokens.
    assert learned(out.out) and "finished: stop" in out.err
    assert (
        main(["generate", "--model", str(demo_model), "--prompt", "what city", "--temp", "0", "--max-tokens", "8"]) == 0
    )
    assert not learned(capsys.readouterr().out)
    assert main(["evaluate", "--adapter-path", str(run), "--no-base"]) == 0
    out = capsys.readouterr().out
    assert f"adapter  loss {val_loss:.4f}" in out and "base" not in out.split("\n", 1)[1]
    assert main(["evaluate", "--adapter-path", str(run), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "Highest adapter loss (2 of 5 rows):" in out and "Improved least by the adapter (2):" in out
    assert main(["fuse", "--adapter-path", str(run), "--save-path", str(tmp_path / "f"), "--dequantize"]) == 0
    assert "saved to" in capsys.readouterr().out and (tmp_path / "f" / "config.json").is_file()
    assert main(["fuse", "--adapter-path", str(tmp_path / "nope"), "--save-path", str(tmp_path / "g")]) == 2
    assert "no such adapter folder" in capsys.readouterr().err


# ------------------------------------------------------------------ validation samples


def test_samples_split_prompt_and_reference_per_format(tmp_path):
    from qlora_gui.core.data.rows import split_text_row
    from qlora_gui.core.inference.samples import ValidationSamples, sample_from_row

    assert split_text_row("table: t\nQ: how many?\nA: SELECT COUNT x FROM t") == (
        "table: t\nQ: how many?\nA:",
        " SELECT COUNT x FROM t",
    )
    assert split_text_row("one two three four") == ("one two", " three four")
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "name?"},
            {"role": "assistant", "content": "Ada"},
        ]
    }
    s = sample_from_row(chat, "chat", "f.jsonl", 3)
    assert (s.prompt, s.system, s.reference) == ("name?", "be brief", "Ada")
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(20)]
    data = write_jsonl(tmp_path / "pc.jsonl", rows)
    samples = ValidationSamples(str(data), valid_fraction=0.2, seed=3)
    assert len(samples) == 4
    picked = samples.pick()
    assert picked.reference == "c" + picked.prompt[1:] and picked.line == int(picked.prompt[1:]) + 1
    assert ValidationSamples(str(tmp_path / "gone.jsonl")).error
