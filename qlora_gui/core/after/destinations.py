"""Where an export goes next: an Ollama Modelfile (and `ollama create`), LM Studio's models folder.

Ollama wants its prompt format as a Go template; we translate the chat templates of the
families we export (Llama 3, ChatML for Qwen, Gemma, Mistral's [INST], Phi-3 and role tags
like the demo model's) and stop on their end-of-turn tokens. LM Studio only lists models laid
out as <models>/<publisher>/<model-name>/; files put directly in models/ are ignored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .staging import staged

LMSTUDIO_PUBLISHER = "qlora-studio"

_LLAMA3 = (
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
_CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
_GEMMA = (
    '{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}<start_of_turn>user\n'
    "{{ if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
    '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n{{ end }}'
    "{{- end }}<start_of_turn>model\n"
)
_MISTRAL = (
    '{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST] '
    "{{ if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}[/INST]"
    '{{ else if eq .Role "assistant" }} {{ .Content }}</s>{{ end }}{{- end }}'
)


def _role_tags(end: str) -> str:
    return (
        f"{{{{- if .System }}}}<|system|>\n{{{{ .System }}}}{end}\n{{{{ end }}}}"
        f"{{{{- range .Messages }}}}<|{{{{ .Role }}}}|>\n{{{{ .Content }}}}{end}\n{{{{ end }}}}<|assistant|>\n"
    )


@dataclass(frozen=True)
class OllamaTemplate:
    family: str
    template: str
    stops: tuple[str, ...]


def ollama_template(chat_template: str | None, eos_token: str | None) -> OllamaTemplate | None:
    """The Go template for a chat template of a family we know; None for any other."""
    t = chat_template or ""
    if "<|start_header_id|>" in t:
        return OllamaTemplate("llama3", _LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    if "<|im_start|>" in t:
        return OllamaTemplate("chatml", _CHATML, ("<|im_start|>", "<|im_end|>"))
    if "<start_of_turn>" in t:
        return OllamaTemplate("gemma", _GEMMA, ("<start_of_turn>", "<end_of_turn>"))
    if "[INST]" in t:
        return OllamaTemplate("mistral", _MISTRAL, ("[INST]", "[/INST]", "</s>"))
    if "<|end|>" in t and "<|user|>" in t:
        return OllamaTemplate("phi3", _role_tags("<|end|>"), ("<|end|>", "<|user|>", "<|assistant|>"))
    if "<|" in t and "|>" in t and "eos_token" in t and eos_token:
        return OllamaTemplate("role-tags", _role_tags(eos_token), (eos_token, "<|user|>", "<|assistant|>"))
    return None


def chat_template_of(model_dir: Path) -> tuple[str | None, str | None]:
    """(chat template, EOS text) from a model folder's tokenizer files."""
    try:
        cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    template = cfg.get("chat_template")
    if not template and (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    eos = cfg.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    return template, eos


def _quoted(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile_text(
    from_line: str, template: OllamaTemplate | None, *, adapter: str | None = None, system: str | None = None
) -> str:
    lines = [f"FROM {from_line}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    if template:
        lines.append(f"TEMPLATE {_quoted(template.template)}")
        lines += [f"PARAMETER stop {json.dumps(s)}" for s in template.stops]
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    return "\n".join(lines) + "\n"


def ollama_create(name: str, modelfile: Path) -> tuple[bool, str]:
    """Run `ollama create` when Ollama is installed: (ran, its output or the command to run)."""
    command = ["ollama", "create", name, "-f", str(modelfile)]
    exe = shutil.which("ollama")
    if exe is None:
        return False, " ".join(command)
    try:
        done = subprocess.run([exe, *command[1:]], capture_output=True, text=True, timeout=3600, cwd=modelfile.parent)
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"ollama create {name} did not run ({e}); run it yourself: {' '.join(command)}") from e
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise UserError(f"ollama create {name} failed: {output[-800:]}")
    return True, output


def lmstudio_models_dir(home: Path | None = None) -> Path | None:
    """LM Studio's models folder: its settings' downloadsFolder, else ~/.lmstudio/models (or the older cache)."""
    home = home or Path.home()
    try:
        settings = json.loads((home / ".lmstudio" / "settings.json").read_text(encoding="utf-8"))
        folder = settings.get("downloadsFolder") if isinstance(settings, dict) else None
        if folder:
            return Path(folder).expanduser()
    except (OSError, ValueError):
        pass
    for candidate in (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"):
        if candidate.is_dir():
            return candidate
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same disk: no second copy of a multi-GB file
    except OSError:
        shutil.copy2(src, dst)


def send_to_lmstudio(export_dir: Path, models_dir: Path | None, model_name: str | None = None) -> Path:
    """Put the export at <models>/qlora-studio/<name>/ (hard links where the disk allows)."""
    if models_dir is None:
        raise UserError(
            "LM Studio's models folder was not found (no ~/.lmstudio/settings.json or ~/.lmstudio/models); "
            "give it with --lmstudio-dir (LM Studio shows it under My Models)"
        )
    target = Path(models_dir).expanduser() / LMSTUDIO_PUBLISHER / (model_name or export_dir.name)
    with staged(target, folder=True) as staging:
        for item in export_dir.iterdir():
            if item.is_dir():
                shutil.copytree(item, staging / item.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(str(item), str(staging / item.name))
    return target
