"""The layout holds: a Qt-free core in layers, CLIs and UI each on the core alone, no import cycle, one job a module."""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qlora_gui"
CORE = PACKAGE / "core"
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "qtpy")
CLI = "qlora_gui.cli"  # the package of the subcommands
# Size is a smell, not a law: a module does one job whatever its length (a file cut to meet a number is worse).
# Past LONG_LINES the test says which modules to look at; past TOO_LONG_LINES one surely does more than one job.
# The core in layers, lowest first: a module imports only from its own subpackage and the layers below it.
# The core's own top-level modules are the vocabulary every layer speaks (settings, events, errors, memory).
CORE_LAYERS = (
    ("",),
    ("data", "model"),
    ("runs",),
    ("distributed", "inference"),
    ("train",),
    ("after",),
)
LONG_LINES = 400
TOO_LONG_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every qlora_gui module a module imports, at the top or inside a function, resolved to its full name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def test_no_core_module_imports_qt():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in QT_MODULES]
    assert offenders == []


def test_importing_every_core_module_loads_no_qt():
    modules = [m for m in MODULES if m.startswith("qlora_gui.core.")]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print([m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_clis_and_the_ui_sit_on_the_core_and_never_on_each_other():
    for name in MODULES:
        imported = imports_of(name)
        if name.startswith("qlora_gui.core"):
            assert not {m for m in imported if not m.startswith("qlora_gui.core")}, name
        if name == CLI or name.startswith(CLI + "."):
            assert not {m for m in imported if m.startswith("qlora_gui.ui")}, name
        if name.startswith("qlora_gui.ui"):
            assert not {m for m in imported if m == CLI or m.startswith(CLI + ".")}, name
            assert "qlora_gui.entry" not in imported, name


def core_layer(name: str) -> tuple[int, str]:
    """A core module's layer and subpackage ("" for the core's top-level modules)."""
    rest = name.removeprefix("qlora_gui.core").lstrip(".").split(".")
    sub = rest[0] if len(rest) > 1 or (CORE / rest[0]).is_dir() else ""
    return next(i for i, names in enumerate(CORE_LAYERS) if sub in names), sub


def test_every_core_subpackage_has_its_layer():
    subpackages = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == {sub for names in CORE_LAYERS for sub in names if sub}


def test_no_core_module_imports_a_layer_above_its_own_or_beside_it():
    wrong = []
    for name in (m for m in MODULES if m.startswith("qlora_gui.core.")):
        layer, sub = core_layer(name)
        for dep in (d for d in imports_of(name) if d.startswith("qlora_gui.core.")):
            dep_layer, dep_sub = core_layer(dep)
            if dep_layer > layer or (dep_layer == layer and dep_sub != sub):
                wrong.append(f"{name} ({sub or 'top'}) imports {dep} ({dep_sub or 'top'})")
    assert wrong == []


def test_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep) :] + [dep] if dep in path else [name, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_grows_past_one_job():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    long = {name: n for name, n in lengths.items() if n > LONG_LINES}
    if long:
        warnings.warn(f"long modules, worth a look (one job each?): {long}", stacklevel=1)
    assert {name: n for name, n in long.items() if n > TOO_LONG_LINES} == {}
