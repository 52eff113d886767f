"""`qlora-gui export` on a real (short) run: GGUF model, GGUF LoRA adapter, PEFT folder, MLX folder;
the Ollama Modelfile and LM Studio's layout on real files; refusals before any work."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
from chat_families import FAMILIES, TEMPLATES
from conftest import fixture_texts, tiny_config, write_jsonl
from gguf import GGUFReader

from qlora_gui.cli import main
from qlora_gui.core.after.destinations import lmstudio_models_dir, modelfile_text, ollama_template
from qlora_gui.core.after.gguf_arch import llama_permute
from qlora_gui.core.inference.adapters import default_adapter

pytestmark = pytest.mark.slow  # end-to-end: a trained run, exported in every format


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_model):
    from qlora_gui.core.train.trainer import Trainer

    root = tmp_path_factory.mktemp("export")
    rows = [{"prompt": t, "completion": "select name"} for t in fixture_texts(16, seed=3)]
    cfg = tiny_config(demo_model, write_jsonl(root / "pc.jsonl", rows), root / "run", iters=3, learning_rate=5e-2)
    Trainer(cfg, lambda e: None).run()
    return root / "run"


def fields(path) -> dict:
    r = GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")} | {
        "tensors": {t.name: (t.tensor_type.name, t) for t in r.tensors}
    }


def test_gguf_with_ollama_modelfile_and_lmstudio_layout(tmp_path, run, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-ollama"))  # Ollama absent: the command is printed
    models = tmp_path / "lmstudio" / "models"
    out = tmp_path / "exports" / "tiny-chat"
    argv = ["export", str(run), "--format", "gguf", "--type", "q8_0", "--out", str(out)]
    argv += ["--ollama", "tiny-chat", "--lmstudio-dir", str(models), "--system", "Answer in SQL."]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    gguf_file = out / "tiny-chat-Q8_0.gguf"
    f = fields(gguf_file)
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 7
    assert f["tensors"]["blk.0.attn_q.weight"][0] == "Q8_0" and "<|assistant|>" in f["tokenizer.chat_template"]
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./tiny-chat-Q8_0.gguf\n") and 'PARAMETER stop "</s>"' in modelfile
    assert "<|{{ .Role }}|>" in modelfile and 'SYSTEM """Answer in SQL."""' in modelfile
    assert f"ollama create tiny-chat -f {out / 'Modelfile'}" in printed
    placed = models / "qlora-studio" / "tiny-chat"  # LM Studio lists <publisher>/<model>/ only
    assert (placed / gguf_file.name).read_bytes() == gguf_file.read_bytes() and f"LM Studio: {placed}" in printed
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err  # never overwritten


def test_adapter_gguf_and_peft_hold_the_same_lora_as_mlx(tmp_path, run, capsys):
    adapter = default_adapter(run)
    mlx_weights = mx.load(str(adapter.path / "adapters.safetensors"))
    scale, rank = adapter.config["lora_parameters"]["scale"], adapter.config["lora_parameters"]["rank"]
    assert main(["export", str(run), "--format", "adapter-gguf", "--out", str(tmp_path / "lora")]) == 0
    f = fields(next((tmp_path / "lora").glob("*-LoRA-F32.gguf")))
    assert f["general.type"] == "adapter" and f["adapter.type"] == "lora" and f["adapter.lora.alpha"] == scale * rank
    a = np.array(mlx_weights["model.layers.1.self_attn.v_proj.lora_a"])
    b = np.array(mlx_weights["model.layers.1.self_attn.v_proj.lora_b"])
    ga = f["tensors"]["blk.1.attn_v.weight.lora_a"][1]
    gb = f["tensors"]["blk.1.attn_v.weight.lora_b"][1]
    assert np.array_equal(np.array(ga.data), a.T) and np.array_equal(np.array(gb.data), b.T)
    bq = np.array(mlx_weights["model.layers.1.self_attn.q_proj.lora_b"]).T  # llama.cpp's q rows are permuted
    assert np.array_equal(np.array(f["tensors"]["blk.1.attn_q.weight.lora_b"][1].data), llama_permute(bq, 4, 4))

    assert main(["export", str(run), "--format", "peft", "--out", str(tmp_path / "peft")]) == 0
    peft = mx.load(str(tmp_path / "peft" / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.1.self_attn.v_proj.lora_{}.weight"
    assert np.array_equal(np.array(peft[key.format("A")]), a.T) and np.array_equal(np.array(peft[key.format("B")]), b.T)
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == rank and config["lora_alpha"] == scale * rank
    assert "q_proj" in config["target_modules"] and config["layers_to_transform"] == [0, 1]


def test_mlx_folder_quantized_to_8_bits(tmp_path, run, capsys):
    assert main(["export", str(run), "--format", "mlx", "--bits", "8", "--out", str(tmp_path / "m8")]) == 0
    config = json.loads((tmp_path / "m8" / "config.json").read_text())
    assert config["quantization"]["bits"] == 8 and "mlx_lm.generate" in capsys.readouterr().out


def test_refusals_come_before_any_work_with_the_reason(tmp_path, run, demo_model, capsys):
    dora = tmp_path / "dora-run"
    shutil.copytree(run, dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "fine_tune_type": "dora"}))
    shutil.rmtree(dora / "checkpoints", ignore_errors=True)
    assert main(["export", str(dora), "--format", "peft", "--out", str(tmp_path / "p")]) == 2
    assert "DoRA" in capsys.readouterr().err and not (tmp_path / "p").exists()
    other = tmp_path / "starcoder"
    shutil.copytree(demo_model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "starcoder2"}))
    argv = ["export", str(run), "--format", "gguf", "--model", str(other), "--out", str(tmp_path / "g")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'starcoder2'" in err and "Traceback" not in err and not (tmp_path / "g").exists()
    assert main(["export", str(run), "--format", "mlx", "--ollama", "x", "--out", str(tmp_path / "o")]) == 2
    assert "Ollama does not load MLX" in capsys.readouterr().err


@pytest.mark.parametrize("family", list(FAMILIES))
def test_ollama_templates_for_each_family(family):
    fam = FAMILIES[family]
    translated = ollama_template((TEMPLATES / fam.template).read_text(encoding="utf-8"), fam.eos)
    assert translated is not None and fam.marker in translated.stops
    text = modelfile_text("./m.gguf", translated)
    assert text.count("{{") == text.count("}}") and ".Messages" in text and f'PARAMETER stop "{fam.marker}"' in text


def test_lmstudio_folder_from_its_settings_or_its_default(tmp_path):
    assert lmstudio_models_dir(tmp_path) is None
    (tmp_path / ".lmstudio" / "models").mkdir(parents=True)
    assert lmstudio_models_dir(tmp_path) == tmp_path / ".lmstudio" / "models"
    (tmp_path / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(tmp_path / "big")}))
    assert lmstudio_models_dir(tmp_path) == tmp_path / "big"


def test_k_quants_are_made_by_llama_cpp_or_say_what_they_need(tmp_path, run, capsys):
    from qlora_gui.core.after.gguf_kquants import llama_cpp_available

    out = tmp_path / "k"
    argv = ["export", str(run), "--format", "gguf", "--type", "q4_k_m", "--out", str(out)]
    if not llama_cpp_available():  # CI: the optional extra is absent
        assert main(argv) == 2 and "llama-cpp-python" in capsys.readouterr().err and not out.exists()
        return
    assert main(argv) == 0, capsys.readouterr().err
    f = fields(out / "k-Q4_K_M.gguf")
    assert f["general.file_type"] == 15 and [p.name for p in out.iterdir()] == ["k-Q4_K_M.gguf"]
