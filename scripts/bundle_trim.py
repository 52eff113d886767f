"""What the bundle leaves out beyond the spec's list of packages, decided by rules rather than by hand.

- Modules that import torch, TensorFlow, Flax or JAX unconditionally. They cannot be imported in a bundle
  that carries none of those, so leaving them out loses nothing: in transformers that is its model code
  (models/*/modeling_*.py), trainer, pipelines and generation, 38 of its 50 MB of sources. Its tokenizer and
  configuration classes, which it imports by name from a model's files, import none of them and stay.
- transformers' input processors for images, video and audio (models/*/image_processing_*.py and the like):
  the app fine-tunes on text, and transformers never imports them to load a tokenizer or a configuration.
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

# In transformers' models/<family>/ folders; models/auto/ keeps its own (they map names, lazily).
INPUT_PROCESSORS = ("processing_", "image_processing_", "video_processing_", "feature_extraction_")

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


def input_processor_modules(transformers_dir: Path) -> list[str]:
    """Dotted names of transformers' per-model image, video, audio and multimodal processors."""
    return [
        f"transformers.models.{path.parent.name}.{path.stem}"
        for path in sorted(transformers_dir.glob("models/*/*.py"))
        if path.stem.startswith(INPUT_PROCESSORS) and path.parent.name != "auto"
    ]


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
