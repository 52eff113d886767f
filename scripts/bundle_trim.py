"""What the bundle leaves out beyond the spec's list of packages, decided by rules rather than by hand.

- Modules that import torch, TensorFlow, Flax or JAX unconditionally. They cannot be imported in a bundle
  that carries none of those, so leaving them out loses nothing: in transformers that is its model code
  (models/*/modeling_*.py), trainer, pipelines and generation, 38 of its 50 MB of sources. Its tokenizer and
  configuration classes, which it imports by name from a model's files, import none of them and stay.
- Everything in transformers' models/<family>/ folders but the tokenizer and configuration modules (and what
  those import beside them, such as Whisper's text normalizer): transformers imports only those by name to load
  a tokenizer or a configuration. A rule, not a list: a family added by a new transformers is trimmed too.
  models/auto/ stays whole (it maps names to classes, lazily).
- Qt plugins for platforms the app never runs on (framebuffers, VNC, EGL devices, touch input, GTK's theme),
  with the shared libraries only they use.
- Debug information (Linux): a Python built from source (pyenv) and a few wheels ship their libraries with
  DWARF sections, libpython alone 17 of its 23 MB. `strip --strip-debug` takes those out of a copy and
  leaves what the loader reads; libraries without them are left as they are, since stripping one that
  auditwheel patched breaks it (numpy's OpenBLAS: "ELF load command address/offset not page-aligned").

Pure functions, checked on any platform by tests/test_bundle_trim.py; build_app.spec applies them.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

FRAMEWORKS = ("torch", "torchvision", "torchaudio", "tensorflow", "flax", "jax")
# At column 0 an import is at the module's top level, outside any `if` or `try`: unconditional.
_FRAMEWORK_IMPORT = re.compile(rb"^(?:import|from)[ \t]+(?:" + "|".join(FRAMEWORKS).encode() + rb")\b", re.M)

# What transformers imports by name from a model's files: the modules of models/<family>/ the bundle keeps.
KEPT_MODEL_MODULES = ("tokenization_", "configuration_")
_SIBLING_IMPORT = re.compile(r"^[ \t]*from[ \t]+\.(\w+)[ \t]+import", re.M)

# Qt plugins, by folder and name without the suffix (.so on Linux, .dylib on macOS). The app runs on a desktop
# (xcb or Wayland on Linux, cocoa on macOS) or offscreen (tests); it shows PNG, SVG and ICO images.
UNUSED_QT_PLUGINS = {
    "platforms": {"libqeglfs", "libqlinuxfb", "libqminimalegl", "libqvnc", "libqvkkhrdisplay"},
    "egldeviceintegrations": None,  # None: the whole folder (EGL on bare hardware, for eglfs)
    "generic": None,  # evdev and TUIO input, for eglfs and linuxfb; desktops deliver input themselves
    # Qt's own dialogs replace GTK's, and a GTK the plugin was not built against no longer comes with it.
    "platformthemes": {"libqgtk3"},
    "imageformats": {"libqtiff", "libqwebp", "libqtga", "libqwbmp", "libqicns", "libqpdf"},
}


def framework_only_modules(package_dir: Path, package: str | None = None) -> list[str]:
    """Dotted names of the modules under `package_dir` that import a framework the bundle leaves out."""
    package = package or package_dir.name
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if _FRAMEWORK_IMPORT.search(path.read_bytes()):
            parts = path.relative_to(package_dir).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append(".".join((package, *parts)))
    return found


def model_code_modules(transformers_dir: Path) -> list[str]:
    """Dotted names of the modules in transformers' models/<family>/ folders that loading a tokenizer or a
    configuration never imports: all but tokenization_*, configuration_*, the package and the siblings those
    import. models/auto/ is kept whole."""
    left_out = []
    for family in sorted(p for p in (transformers_dir / "models").iterdir() if p.is_dir() and p.name != "auto"):
        modules = {path.stem: path for path in family.glob("*.py")}
        named = {name for name in modules if name.startswith(KEPT_MODEL_MODULES)}
        kept = {"__init__"} | named
        todo = sorted(named)
        while todo:  # what they import from beside them stays too (the package's own imports are lazy)
            for sibling in _SIBLING_IMPORT.findall(modules[todo.pop()].read_text(encoding="utf-8")):
                if sibling in modules and sibling not in kept:
                    kept.add(sibling)
                    todo.append(sibling)
        left_out += [f"transformers.models.{family.name}.{name}" for name in sorted(set(modules) - kept)]
    return left_out


def unused_qt_plugin(dest: str) -> bool:
    """Whether a bundle path (PySide6/Qt/plugins/FOLDER/NAME.so) is a Qt plugin the app never loads."""
    parts = dest.replace(os.sep, "/").split("/")
    if len(parts) < 3 or parts[-3] != "plugins":
        return False
    folder, name = parts[-2], parts[-1].split(".", 1)[0]
    if folder not in UNUSED_QT_PLUGINS:
        return False
    names = UNUSED_QT_PLUGINS[folder]
    return names is None or name in names


def orphaned_libraries(dropped: set[str], needs: Mapping[str, Iterable[str]]) -> set[str]:
    """The libraries only `dropped` binaries need: reached from them through `needs` (binary -> the libraries
    it links), and from no other binary. A library some kept binary links, directly or not, stays."""

    def reach(starts: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(starts)
        while todo:
            for lib in needs.get(todo.pop(), ()):
                if lib not in seen:
                    seen.add(lib)
                    todo.append(lib)
        return seen

    from_dropped = reach(dropped) - dropped
    kept = set(needs) - dropped - from_dropped  # the binaries collected for their own sake
    return from_dropped - reach(kept)


def has_debug_info(path: Path) -> bool:
    """Whether a 64-bit ELF file has DWARF sections (.debug_info): read from its section names, never from its
    contents (Rust libraries carry the string ".debug_info" for their backtraces)."""
    try:
        with path.open("rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False
            order = "<" if header[5] == 1 else ">"
            (section_table,) = struct.unpack_from(order + "Q", header, 0x28)
            entry_size, count, names_index = struct.unpack_from(order + "HHH", header, 0x3A)
            if not count or names_index >= count:
                return False
            f.seek(section_table + names_index * entry_size)
            names_offset, names_size = struct.unpack_from(order + "QQ", f.read(entry_size), 0x18)
            f.seek(names_offset)
            names = f.read(names_size)
    except (OSError, struct.error):
        return False
    return b".debug_info\0" in names


# What the bundle carries and its tests' traced runs never import (tests/test_bundle.py), by package: each group
# of at least LARGE_UNIMPORTED_BYTES is here with the reason it is carried, so growth is caught with a reason.
LARGE_UNIMPORTED_BYTES = 400_000
CARRIED_UNIMPORTED = {
    "transformers.models": "every family's tokenizer and configuration modules: transformers imports a model's by "
    "name from its files, and the traced runs load the demo model's only",
    "mlx_lm.models": "mlx-lm imports a model's module by name from config.json's model_type",
    "hf_xet": "Hub downloads from the Model tab (files in Xet storage); imported only when a model downloads",
    "safetensors": "its Rust reader: transformers' and huggingface_hub's file utilities import it on demand",
    "pygments": "rich's syntax highlighting (huggingface_hub's and typer's console output); imported on demand",
    "setuptools": "mlx-lm and transformers reach it through importlib.metadata's entry points; most of it unused",
    "google": "protobuf, for SentencePiece tokenizers' model files (converted to fast tokenizers on load)",
    "numpy.fft": "numpy's own package: imported by numpy features the app does not call, kept whole",
    "tensorboardX": "report_to tensorboard: imported when a run logs to TensorBoard",
    "charset_normalizer": "requests' encoding detection, imported when a Hub response has no charset",
}
# Packages whose members are told apart (a group each); other modules group by their top-level package.
_GROUPED_DEEPER = ("transformers", "mlx_lm", "huggingface_hub", "numpy", "PySide6", "qlora_gui", "mlx")


def module_group(name: str) -> str:
    """The group a module is reported under: `transformers.models` for transformers.models.llama.x, `rich` for
    rich.console."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] in _GROUPED_DEEPER and len(parts) > 1 else parts[0]


def unimported_groups(carried: Mapping[str, int], imported: Iterable[str]) -> dict[str, tuple[int, int]]:
    """group -> (modules, bytes) of what is carried (module name -> bytes) and not imported."""
    imported = set(imported)
    groups: dict[str, tuple[int, int]] = {}
    for name, size in carried.items():
        if name not in imported:
            count, total = groups.get(module_group(name), (0, 0))
            groups[module_group(name)] = (count + 1, total + size)
    return groups


def extension_module(relative: Path) -> str | None:
    """The module name of a bundle file (relative to the bundle's library folder) that is a Python extension
    (`numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so` -> numpy._core._multiarray_umath, the standard
    library's from python3.X/lib-dynload/), else None (plain shared libraries such as libmlx.so)."""
    name = relative.name  # libshiboken6.abi3.so.6.11 is a library: an extension's name ends in .so or .pyd
    if not name.endswith((".so", ".pyd")) or not (".cpython-" in name or ".abi3." in name):
        return None
    parts = list(relative.parts[:-1])
    if len(parts) >= 2 and parts[0].startswith("python3") and parts[1] == "lib-dynload":
        parts = parts[2:]
    return ".".join([*parts, name.split(".", 1)[0]])
