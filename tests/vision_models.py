"""Tiny random vision-language models, built offline from mlx-vlm's own classes: a Qwen2-VL and a Gemma 3, each
with a byte-level BPE tokenizer holding its family's special tokens, its real chat template, and its image
processor's settings. They know nothing until trained; the tests teach them to name a square's colour."""

from __future__ import annotations

import json
from pathlib import Path

QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and "
    "message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or "
    "'image_url' in content %}{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|>"
    "<|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    '{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = "" -%}'
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}{%- endif -%}'
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- else -%}"
    "{{ raise_exception(\"Invalid content type\") }}{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
)
CORPUS = ["What colour is the square? red blue green The square is red. It is blue."] * 4
IMAGE_SIZE = 28  # pixels a side: Qwen2-VL's 14-pixel patches, 2x2 merged into one image token


def _tokenizer(out: Path, specials: list[str], bos: str | None, eos: str, pad: str, template: str, **extra):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, **extra)
    fast.chat_template = template
    fast.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(template)
    return fast


def _model(family, config: dict, seed: int):
    """The model mlx-vlm's loader would build from this config.json, with random weights."""
    import mlx.core as mx
    from mlx_vlm.utils import update_module_configs

    params = json.loads(json.dumps(config))
    params.setdefault("text_config", {})
    model_config = family.ModelConfig.from_dict(params)
    model_config = update_module_configs(model_config, family, params, ["text", "vision"])
    mx.random.seed(seed)
    return family.Model(model_config)


def _save(out: Path, model, config: dict) -> Path:
    """Write the weights; an untied output head is scaled up so that 64 hidden units can make a confident
    prediction (at its default scale no logit reaches 5 and the loss cannot fall below about 3)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    head = getattr(model.language_model, "lm_head", None)
    if head is not None:
        head.weight = head.weight * 8

    mx.eval(model.parameters())
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())), {"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def build_qwen2_vl(out: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2-VL: a 1-block vision tower on 14-pixel patches, 4 patches to an image token."""
    from mlx_vlm.models import qwen2_vl

    out.mkdir(parents=True, exist_ok=True)
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tok = _tokenizer(out, specials, None, "<|im_end|>", "<|endoftext|>", QWEN2_VL_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": len(tok),
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": False,
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "eos_token_id": ids["<|im_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "vision_config": {
            "model_type": "qwen2_vl",
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }
    pre = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": IMAGE_SIZE * IMAGE_SIZE,
        "max_pixels": 4 * IMAGE_SIZE * IMAGE_SIZE,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return _save(out, _model(qwen2_vl, config, seed), config)


def build_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2.5-VL: Qwen2-VL's tokenizer and template, a 1-block windowed vision tower."""
    from mlx_vlm.models import qwen2_5_vl

    build_qwen2_vl(out, seed)  # the tokenizer, template and image processor; the model is replaced below
    config = json.loads((out / "config.json").read_text())
    config.update(model_type="qwen2_5_vl", architectures=["Qwen2_5_VLForConditionalGeneration"])
    config["vision_config"] = {
        "model_type": "qwen2_5_vl",
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": 64,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [0],
    }
    pre = json.loads((out / "preprocessor_config.json").read_text())
    pre.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor")
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return _save(out, _model(qwen2_5_vl, config, seed), config)


def build_gemma3(out: Path, seed: int = 0) -> Path:
    """A 2-layer Gemma 3: a 1-layer SigLIP on 28-pixel images of 14-pixel patches, 4 soft tokens an image."""
    import mlx.core as mx
    from mlx_vlm.models import gemma3

    out.mkdir(parents=True, exist_ok=True)
    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    tok = _tokenizer(
        out,
        specials,
        "<bos>",
        "<eos>",
        "<pad>",
        GEMMA3_TEMPLATE,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    text = {
        "model_type": "gemma3_text",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "vocab_size": len(tok),
        "query_pre_attn_scalar": 16,
        "sliding_window": 512,
        "sliding_window_pattern": 2,
        "mm_tokens_per_image": 4,
        "max_position_embeddings": 4096,
    }
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": text,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "patch_size": 14,
            "image_size": IMAGE_SIZE,
        },
        "mm_tokens_per_image": 4,
        "image_token_index": ids["<image_soft_token>"],
        "boi_token_index": ids["<start_of_image>"],
        "eoi_token_index": ids["<end_of_image>"],
        "vocab_size": len(tok),
        "hidden_size": 64,
        "pad_token_id": ids["<pad>"],
        "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
        "bos_token_id": ids["<bos>"],
    }
    pre = {
        "image_processor_type": "Gemma3ImageProcessor",
        "processor_class": "Gemma3Processor",
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_pan_and_scan": False,
        "resample": 2,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Gemma3Processor", "image_seq_length": 4}, indent=2)
    )
    model = _model(gemma3, config, seed)
    # mlx-vlm starts the projector at all ones, which sends every vision channel to the same sum: random, as
    # a trained projector is not, so that the picture's colour reaches the language model.
    projector = model.multi_modal_projector
    shape = projector.mm_input_projection_weight.shape
    projector.mm_input_projection_weight = mx.random.normal(shape) * shape[0] ** -0.5
    return _save(out, model, config)


def square_png(path: Path, colour: str, size: int = IMAGE_SIZE, seed: int = 0) -> Path:
    """A square of one colour on a lightly noisy background: red or blue, to be named."""
    import numpy as np
    from PIL import Image

    rgb = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}[colour]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(100, 156, (size, size, 3)).astype(np.uint8)
    a, b = int(rng.integers(1, 4)), size - int(rng.integers(1, 4))
    pixels[a:b, a:b] = rgb
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


FAMILIES = ("qwen2_vl", "gemma3")
QUESTION = "What colour is the square?"


def vision_config(model: Path, data: Path, run: Path, **kw):
    from qlora_gui.core.config import TrainConfig

    base = dict(
        model=str(model),
        data=str(data),
        adapter_path=str(run),
        batch_size=4,
        iters=20,
        num_layers=2,
        learning_rate=1e-3,
        mask_prompt=True,
        valid_fraction=0.0,
        steps_per_report=1,
        steps_per_eval=1000,
        save_every=10,
        sample_answers=0,
        lora_parameters={"rank": 8, "scale": 10.0, "dropout": 0.0},
    )
    return TrainConfig(**{**base, **kw})


def run_events(cfg, **kw):
    from qlora_gui.core.train.trainer import Trainer

    events = []
    result = Trainer(cfg, events.append, **kw).run()
    return result, events
