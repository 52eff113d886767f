"""What the bundle leaves out (scripts/bundle_trim.py), checked without building it; the bundle test then runs
what is left: training, generation, fusing and tokenizers of several model families."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bundle_trim import (  # noqa: E402
    extension_module,
    framework_only_modules,
    has_debug_info,
    model_code_modules,
    orphaned_libraries,
    unimported_groups,
    unused_qt_plugin,
)


def test_only_modules_that_import_a_left_out_framework_unconditionally_are_left_out(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text('"""Model code."""\nimport os\nimport torch\n')
    (package / "layers.py").write_text("from torch.nn import Linear\n")
    (package / "maybe.py").write_text("try:\n    import torch\nexcept ImportError:\n    torch = None\n")
    (package / "tokenizer.py").write_text("import tokenizers  # torch is not needed here\n")
    (package / "sub" / "__init__.py").write_text("import jax.numpy as jnp\n")
    assert framework_only_modules(package) == ["pkg.layers", "pkg.model", "pkg.sub"]


def test_a_model_folder_keeps_its_tokenizer_and_configuration_and_what_they_import(tmp_path):
    root = tmp_path / "transformers"
    for family, files in {
        "auto": {"auto_factory.py": "", "modeling_auto.py": ""},
        "newfamily": {"__init__.py": "", "modeling_newfamily.py": "import numpy\n", "processing_newfamily.py": ""},
        "whisper": {
            "__init__.py": "",
            "tokenization_whisper.py": "from .english_normalizer import BasicTextNormalizer\n",
            "english_normalizer.py": "from .numbers import spell\n",
            "numbers.py": "",
            "configuration_whisper.py": "",
            "feature_extraction_whisper.py": "",
            "generation_whisper.py": "",
        },
    }.items():
        (root / "models" / family).mkdir(parents=True)
        for name, text in files.items():
            (root / "models" / family / name).write_text(text)
    assert model_code_modules(root) == [
        "transformers.models.newfamily.modeling_newfamily",  # by rule: a family no list names
        "transformers.models.newfamily.processing_newfamily",
        "transformers.models.whisper.feature_extraction_whisper",
        "transformers.models.whisper.generation_whisper",
    ]


def test_transformers_keeps_every_tokenizer_and_configuration_and_what_the_app_imports():
    root = Path(importlib.util.find_spec("transformers").submodule_search_locations[0])
    left_out = set(framework_only_modules(root)) | set(model_code_modules(root))
    assert "transformers.models.llama.modeling_llama" in left_out and "transformers.trainer" in left_out
    assert "transformers.models.llava.processing_llava" in left_out  # image + text: the app trains on text
    assert "transformers.models.whisper.english_normalizer" not in left_out  # Whisper's tokenizer imports it
    assert not [m for m in left_out if m.startswith("transformers.models.auto.")]  # they map names, lazily
    kept_by_name = [m for m in left_out if m.rsplit(".", 1)[-1].startswith(("tokenization_", "configuration_"))]
    assert kept_by_name == []  # transformers imports these by name from a model's files
    # Imported while the app trains, generates, fuses and checks data (sys.modules after those, trimmed).
    imported = [
        "transformers.configuration_utils",
        "transformers.convert_slow_tokenizer",
        "transformers.dynamic_module_utils",
        "transformers.generation.configuration_utils",
        "transformers.image_utils",
        "transformers.modeling_rope_utils",
        "transformers.models.auto.configuration_auto",
        "transformers.models.auto.tokenization_auto",
        "transformers.tokenization_python",
        "transformers.tokenization_utils_base",
        "transformers.tokenization_utils_sentencepiece",
        "transformers.tokenization_utils_tokenizers",
        "transformers.utils.chat_template_utils",
        "transformers.video_utils",
    ]
    assert [m for m in imported if m in left_out] == []


def test_qt_plugins_for_platforms_the_app_never_runs_on_are_left_out():
    assert unused_qt_plugin("PySide6/Qt/plugins/platforms/libqvnc.so")
    assert unused_qt_plugin("PySide6/Qt/plugins/generic/libqtuiotouchplugin.dylib")
    assert unused_qt_plugin("PySide6/Qt/plugins/egldeviceintegrations/libqeglfs-kms-integration.so")
    assert unused_qt_plugin("PySide6/Qt/plugins/platformthemes/libqgtk3.so")
    for kept in ("platforms/libqxcb.so", "platforms/libqwayland.so", "platforms/libqcocoa.dylib"):
        assert not unused_qt_plugin(f"PySide6/Qt/plugins/{kept}")
    assert not unused_qt_plugin("PySide6/Qt/plugins/platforms/libqoffscreen.so")  # the tests and --smoke-test
    assert not unused_qt_plugin("PySide6/Qt/lib/libQt6Gui.so.6")  # a library, not a plugin


def test_a_library_goes_only_when_nothing_kept_links_it():
    needs = {
        "qvnc": {"Qt6Network", "Qt6Gui"},
        "qgtk3": {"cairo", "Qt6Gui"},
        "cairo": {"pixman", "X11"},
        "Qt6Network": {"gssapi"},
        "qxcb": {"Qt6Gui", "X11"},
        "QtGui.so": {"Qt6Gui"},
        "Qt6Gui": {"Qt6Core"},
        "loaded-by-name": set(),  # dlopen()ed: nothing links it, and nothing dropped did either
    }
    gone = orphaned_libraries({"qvnc", "qgtk3"}, needs)
    assert gone == {"Qt6Network", "gssapi", "cairo", "pixman"}


def elf(section_names: list[bytes]) -> bytes:
    """A 64-bit little-endian ELF header, its section table (null + the given) and the section names."""
    names = b"\0" + b"".join(n + b"\0" for n in section_names)
    count = 1 + len(section_names)
    table_at, names_at = 64, 64 + 64 * count
    header = (
        b"\x7fELF"
        + bytes([2, 1, 1])
        + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, table_at, 0, 64, 0, 0, 64, count, count - 1)
    )
    table = bytes(64) * (count - 1) + struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    return header + table + names


def test_debug_sections_are_found_by_their_names(tmp_path):
    with_debug, plain, other = tmp_path / "a.so", tmp_path / "b.so", tmp_path / "c.txt"
    with_debug.write_bytes(elf([b".text", b".debug_info", b".shstrtab"]))
    plain.write_bytes(elf([b".text", b".rodata", b".shstrtab"]) + b"panic: .debug_info\0")  # a string, not a section
    other.write_text("not ELF")
    assert has_debug_info(with_debug) and not has_debug_info(plain) and not has_debug_info(other)


def test_what_is_carried_and_never_imported_is_grouped_by_package():
    carried = {
        "rich.console": 100,
        "rich.syntax": 50,
        "pygments.lexers": 900,
        "transformers.models.llama.configuration_llama": 10,
        "transformers.models.qwen2.configuration_qwen2": 20,
        "transformers.utils.hub": 5,
    }
    imported = ["rich.console", "transformers.models.llama.configuration_llama", "transformers.utils.hub", "os"]
    assert unimported_groups(carried, imported) == {
        "rich": (1, 50),
        "pygments": (1, 900),
        "transformers.models": (1, 20),
    }


def test_python_extensions_are_told_from_plain_libraries():
    assert extension_module(Path("numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so")) == (
        "numpy._core._multiarray_umath"
    )
    assert extension_module(Path("python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")) == "_ssl"
    assert extension_module(Path("PySide6/QtCore.abi3.so")) == "PySide6.QtCore"
    assert (
        extension_module(Path("shiboken6/libshiboken6.abi3.so.6.11")) is None
        and extension_module(Path("mlx/lib/libmlx.so")) is None
        and extension_module(Path("libpython3.11.so.1.0")) is None
    )
