"""Vision-language models trained in our loop, offline, on tiny random Qwen2-VL and Gemma 3 models built from
mlx-vlm's own classes: the causal mask per family, the masks of picture rows, 20 steps that teach each model to
name the colour of squares it never saw, an exact resume, adapters mlx-vlm loads, and refusals."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest

pytest.importorskip("mlx_vlm")

from vision_models import FAMILIES, QUESTION, run_events, square_png, vision_config  # noqa: E402

from qlora_gui.core.data.batching import make_batch  # noqa: E402
from qlora_gui.core.data.dataset import check_data  # noqa: E402
from qlora_gui.core.events import Failed, Finished, RunStarted, SampleAnswers  # noqa: E402
from qlora_gui.core.inference.vision_answer import answer, load_vision_model  # noqa: E402
from qlora_gui.core.model.vision_model import load_processor, vision_logits  # noqa: E402
from qlora_gui.core.runs import checkpoints as ckpt  # noqa: E402
from qlora_gui.core.train.vision_step import picture_arrays  # noqa: E402


@pytest.mark.parametrize("family", (*FAMILIES, "qwen2_5_vl"))
def test_a_later_token_never_changes_an_earlier_logit(family, vision_models, squares):
    """The causal mask each family's forward gets here (mlx-vlm's Gemma 3 uses the padding mask as the whole
    attention mask, so there every token sees the later ones)."""
    processor = load_processor(vision_models[family])
    split = check_data(squares, processor, valid_fraction=0.0, vision=True).encoded["train"]
    inputs = mx.array(make_batch(split, np.arange(2)).inputs)
    pictures = [mx.array(a) for a in picture_arrays(processor, family, split.images[0] + split.images[1])]
    pixels, grid = pictures[0], (pictures[1] if len(pictures) > 1 else None)
    vm = load_vision_model(vision_models[family])
    before = vision_logits(vm.model, family, inputs, pixels, grid)
    cut = inputs.shape[1] - 4
    changed = np.array(inputs)
    changed[:, cut:] = (changed[:, cut:] + 7) % 200 + 20  # later text tokens, never a picture's
    after = vision_logits(vm.model, family, mx.array(changed), pixels, grid)
    assert float(mx.abs(after[:, :cut] - before[:, :cut]).max()) == 0.0
    assert float(mx.abs(after[:, cut:] - before[:, cut:]).max()) > 1e-3  # the change did reach the model


def test_every_assistant_turn_is_trained_and_no_picture_token(vision_models, tmp_path):
    square_png(tmp_path / "a.png", "red")
    square_png(tmp_path / "b.png", "blue")
    turns = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "First?"}]},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And this?"}]},
        {"role": "assistant", "content": "blue"},
    ]
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"images": ["a.png", "b.png"], "messages": turns}) + "\n")
    for family, picture_tokens in (("qwen2_vl", 1), ("gemma3", 4)):
        processor = load_processor(vision_models[family])
        check = check_data(data, processor, valid_fraction=0.0, mask_prompt=True, vision=True)
        assert check.report.usable, check.report.problem_lines()
        split = check.encoded["train"]
        ids, mask = split.tokens[0], split.trained[0]
        picture = ids == processor.image_token_id
        assert picture.sum() == 2 * picture_tokens == split.image_tokens[0]
        assert not mask[picture].any()
        text = processor.tokenizer.decode(ids[mask].tolist())
        assert "red" in text and "blue" in text  # both answers, the first one too
        assert "First" not in text and "this" not in text  # no prompt
        everything = check_data(data, processor, valid_fraction=0.0, mask_prompt=False, vision=True)
        all_ids, all_trained = everything.encoded["train"].tokens[0], everything.encoded["train"].trained[0]
        assert not all_trained[all_ids == processor.image_token_id].any()  # never, even training on all


@pytest.mark.parametrize("family", FAMILIES)
def test_twenty_steps_teach_the_colour_resume_exactly_and_mlx_vlm_loads_the_adapter(
    family, vision_models, squares, vision_runs, tmp_path
):
    run, events = vision_runs[family]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.train_rows == 18 and started.steps_per_epoch == 5  # 18 rows in 5 batches: none dropped

    vm = load_vision_model(vision_models[family], run)
    for i, colour in enumerate(("red", "blue", "red", "blue")):
        picture = square_png(tmp_path / "unseen" / f"{i}.png", colour, seed=100 + i)
        assert answer(vm, [picture], QUESTION, max_tokens=4) == colour

    # The run killed after its step-10 checkpoint and resumed in a fresh folder: the same adapter at step 20
    # (one family: the loop, checkpoints and batch order are the text runs' own, tested there at length).
    assert [c.step for c in ckpt.list_checkpoints(run)] == [10, 20]
    resumed = tmp_path / "resumed"
    if family != "gemma3":
        resumed = run
    if resumed != run:
        second, _ = run_events(
            vision_config(vision_models[family], squares, resumed), resume_from=run / "checkpoints" / "0000010"
        )
        assert isinstance(second, Finished) and second.step == 20, second
    a = mx.load(str(run / "adapters.safetensors"))
    b = mx.load(str(resumed / "adapters.safetensors"))
    assert a.keys() == b.keys() and all(k.startswith("language_model.") for k in a)
    for k in a:
        np.testing.assert_allclose(np.array(b[k]), np.array(a[k]), atol=1e-6, rtol=0)

    from mlx_vlm import load

    theirs, _ = load(str(vision_models[family]), adapter_path=str(run))
    ids = mx.array([[1, 2, 3, 4, 5, 6]])
    ours_logits = vision_logits(vm.model, family, ids, None)
    theirs_logits = vision_logits(theirs, family, ids, None)
    np.testing.assert_allclose(np.array(theirs_logits), np.array(ours_logits), atol=1e-4, rtol=0)


def test_the_cli_trains_answers_about_a_picture_and_fuses_for_mlx_vlm(
    vision_models, squares, vision_runs, tmp_path, capsys
):
    from mlx_vlm import generate, load

    from qlora_gui.cli import main

    run = tmp_path / "cli_run"
    model = str(vision_models["gemma3"])
    capsys.readouterr()
    assert main(["check-data", str(squares), "--model", model, "--mask-prompt", "--show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "format: vision" in shown and "picture · 4 tokens" in shown and "[[red<end_of_turn>]]" in shown
    argv = ["train", "--model", model, "--data", str(squares), "--adapter-path", str(run), "--iters", "2"]
    assert main([*argv, "--batch-size", "4", "--num-layers", "2", "--valid-fraction", "0"]) == 0
    assert (run / "adapters.safetensors").is_file()

    picture = square_png(tmp_path / "red.png", "red", seed=7)
    qwen_run = vision_runs["qwen2_vl"][0]
    argv = ["generate", "--adapter-path", str(qwen_run), "--image", str(picture), "--prompt", QUESTION]
    capsys.readouterr()
    assert main([*argv, "--max-tokens", "4", "--compare"]) == 0
    out = capsys.readouterr().out
    assert out.split("==== adapter ====")[1].strip() == "red"

    fused = tmp_path / "fused"
    assert main(["fuse", "--adapter-path", str(qwen_run), "--save-path", str(fused)]) == 0
    assert answer(load_vision_model(fused), [picture], QUESTION, max_tokens=4) == "red"
    fused_model, processor = load(str(fused))  # and mlx-vlm's own generate runs it
    assert isinstance(generate(fused_model, processor, QUESTION, image=[str(picture)], max_tokens=2).text, str)


def test_an_unchecked_family_is_refused_by_model_type(vision_models, squares, tmp_path):
    other = tmp_path / "llava"
    shutil.copytree(vision_models["qwen2_vl"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llava"}))
    result, _ = run_events(vision_config(other, squares, tmp_path / "run"))
    assert isinstance(result, Failed) and result.exit_code == 2
    assert "model_type 'llava'" in result.message and "Qwen2-VL" in result.message and "Gemma 3" in result.message


def test_dora_on_a_4_bit_base_trains_and_mlx_vlm_restores_both(vision_models, squares, tmp_path):
    from mlx_vlm import load

    model, run = vision_models["gemma3"], tmp_path / "run"
    cfg = vision_config(model, squares, run, iters=4, fine_tune_type="dora", quantize_bits=4, quantize_group_size=32)
    cfg.valid_fraction, cfg.sample_answers, cfg.sample_tokens = 0.2, 2, 3  # answers about validation pictures
    result, events = run_events(cfg)
    assert isinstance(result, Finished) and np.isfinite(result.train_loss), result
    samples = [e for e in events if isinstance(e, SampleAnswers)]
    assert [s.step for s in samples] == [0, 4] and all(len(s.answers) == 2 for s in samples)
    assert all(a["source"].startswith(f"{squares}:") and a["reference"] in ("red", "blue") for a in samples[0].answers)
    assert "quantized" in next(e for e in events if isinstance(e, RunStarted)).quant_path
    saved = json.loads((run / "adapter_config.json").read_text())
    assert saved["base_quantization"]["language_model.model.layers.0.self_attn.q_proj"]["bits"] == 4
    ours = load_vision_model(model, run)
    theirs, _ = load(str(model), adapter_path=str(run))
    ids = mx.array([[1, 2, 3, 4, 5, 6]])
    np.testing.assert_array_equal(
        np.array(vision_logits(theirs, "gemma3", ids, None)), np.array(vision_logits(ours.model, "gemma3", ids, None))
    )


def test_a_vision_run_exports_as_an_mlx_vlm_folder_and_the_rest_says_not_yet(vision_runs, tmp_path):
    from qlora_gui.core.after.evaluation import evaluate
    from qlora_gui.core.after.export import ExportRequest, export
    from qlora_gui.core.errors import UserError
    from qlora_gui.core.inference.adapters import read_adapter

    adapter = read_adapter(vision_runs["gemma3"][0])
    assert adapter.is_vision
    with pytest.raises(UserError, match="a vision run exports as an MLX folder"):
        export(ExportRequest(adapter, "gguf", tmp_path / "gguf"))
    with pytest.raises(UserError, match="Evaluate does not take vision runs yet"):
        evaluate(None, adapter)
    result = export(ExportRequest(adapter, "mlx", tmp_path / "mlx"))
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= {f.name for f in result.files}
    assert "mlx_vlm.generate" in result.notes[0]
