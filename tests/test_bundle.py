"""The built bundle, run as a person would: version, data check, tokenizers of several model families, a short
run, MLX computing on its device (the GPU on a Mac) and the window; its size on Linux, its seal and minimum
macOS on a Mac.

Builds the bundle with build_app.spec, or reuses a build of the same sources and
packages. Takes about two minutes when it builds; skip locally with `-m "not bundle"`.
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qlora_gui import __version__
from qlora_gui.core.app_log import LOG_NAME
from qlora_gui.core.resources import sample_data_path
from qlora_gui.entry import TRACE_IMPORTS_ENV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = pytest.mark.bundle


@pytest.fixture(scope="module")
def exe() -> Path:
    import build_app

    return build_app.build(quiet=True)


@pytest.fixture(scope="module")
def import_traces(tmp_path_factory) -> Path:
    """Where every bundle process of these tests writes the modules it imported (the last test reads them)."""
    return tmp_path_factory.mktemp("imports")


@pytest.fixture()
def env(tmp_path, import_traces, request) -> dict:
    """A clean user: settings, logs and the demo model go under tmp_path, and nothing may download."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "QT_QPA_PLATFORM": "offscreen",
        "HF_HUB_OFFLINE": "1",
        TRACE_IMPORTS_ENV: str(import_traces / f"{request.node.name}.txt"),
    }


def run(exe: Path, *args: str, env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(exe), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_version(exe, env, tmp_path):
    result = run(exe, "--version", env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"qlora-gui {__version__}"


def test_nothing_is_written_into_the_bundle_after_pyinstaller(exe):
    import build_app

    # A file added after PyInstaller signed a macOS bundle breaks its seal; the build's hash lives beside it.
    assert build_app.STAMP.is_file() and not build_app.STAMP.is_relative_to(build_app.bundle_dir())
    assert not list(build_app.bundle_dir().glob(".build-hash"))
    assert any(exe.parent.parent.rglob("guide/README.md"))  # Help > User guide travels with the bundle


def test_one_libmlx_with_its_metallib(exe):
    bundle = exe.parent.parent if sys.platform == "darwin" else exe.parent  # the .app's Contents, or the folder
    real = [p for p in bundle.rglob("libmlx.*") if not p.is_symlink()]
    assert len(real) == 1, real  # a second copy makes MLX look for the metallib in the wrong place
    assert real[0].parent.name == "lib" and real[0].parent.parent.name == "mlx"
    if sys.platform == "darwin":
        assert (real[0].parent / "mlx.metallib").is_file()


def test_check_data_on_the_sample_file(exe, env, tmp_path):
    result = run(exe, "check-data", str(sample_data_path()), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "format: completions" in result.stdout and "OK:" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    result = run(exe, "check-data", str(bad), env=env, cwd=tmp_path)
    assert result.returncode == 2 and f"{bad}:2:" in result.stdout


def test_a_five_step_run_writes_an_adapter_that_generates_and_fuses(exe, env, tmp_path):
    assert run(exe, "demo-model", "demo", env=env, cwd=tmp_path).returncode == 0
    result = run(
        exe,
        "train",
        "--model",
        "demo",
        "--data",
        str(sample_data_path()),
        "--iters",
        "5",
        "--batch-size",
        "2",
        "--num-layers",
        "2",
        "--steps-per-report",
        "1",
        "--adapter-path",
        "run",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    from qlora_gui.core.blas import openblas_library

    if openblas_library():  # the bundle re-runs itself with the system's OpenBLAS, as the checkout does
        assert "BLAS: openblas" in result.stdout
    run_dir = tmp_path / "run"
    assert (run_dir / "adapters.safetensors").stat().st_size > 0
    steps = [
        e["step"] for e in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if e["event"] == "step"
    ]
    assert steps == [1, 2, 3, 4, 5]
    result = run(
        exe, "generate", "--adapter-path", "run", "--prompt", "how many", "--max-tokens", "4", env=env, cwd=tmp_path
    )
    assert result.returncode == 0 and "4 tokens" in result.stderr
    result = run(exe, "fuse", "--adapter-path", "run", "--save-path", "fused", env=env, cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "fused" / "config.json").is_file(), result.stderr


# transformers imports a family's tokenizer and configuration classes by name (the bundle leaves its model code
# out): by class name from tokenizer_config.json, or from config.json's model_type when that names none.
FAMILIES = [("qwen2", "Qwen2Tokenizer"), ("mistral", "LlamaTokenizerFast"), ("qwen3", None), ("phi3", None)]


def test_tokenizers_of_several_model_families_load(exe, env, tmp_path, demo_model):
    for model_type, tokenizer_class in FAMILIES:
        folder = tmp_path / model_type
        shutil.copytree(demo_model, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer.pop("tokenizer_class")
        if tokenizer_class:
            tokenizer["tokenizer_class"] = tokenizer_class
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
        result = run(exe, "check-data", str(sample_data_path()), "--model", str(folder), env=env, cwd=tmp_path)
        assert result.returncode == 0 and "tokens min/mean" in result.stdout, (model_type, result.stderr)


def test_the_window_opens_and_quits_cleanly_after_mlx_computes_on_its_device(exe, env, tmp_path):
    result = run(exe, "--smoke-test", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    # On a Mac: Metal available and a matmul evaluated on the GPU (the metallib beside the one libmlx).
    assert ("compute: gpu (Metal)" if sys.platform == "darwin" else "compute: ") in result.stdout
    assert "window shown" in result.stdout and "6 tabs" in result.stdout
    log = Path(env["XDG_STATE_HOME"]) / "QLoRA Studio" / "log" / LOG_NAME
    assert not log.exists() or "unexpected error" not in log.read_text()


def test_the_linux_bundle_stays_within_its_size(exe):
    import build_app

    if sys.platform == "darwin":
        pytest.skip("the limit is for the Linux bundle; a Mac's carries other libraries")
    size = build_app.folder_size(build_app.app_bundle()) / 1e6
    assert size <= build_app.MAX_LINUX_MB, (
        f"{build_app.app_bundle()} weighs {size:.0f} MB, over {build_app.MAX_LINUX_MB} MB: see what grew "
        "(du -sm dist/qlora-studio/_internal/* | sort -n) and leave it out in build_app.spec or scripts/bundle_trim.py"
    )


@pytest.mark.skipif(sys.platform != "darwin", reason="a macOS bundle")
def test_the_app_is_sealed_and_asks_for_the_macos_its_mlx_needs(exe):
    import build_app
    from macos_minimum import installed_minimum

    app = build_app.app_bundle()
    plist = plistlib.loads((app / "Contents" / "Info.plist").read_bytes())
    assert plist["LSMinimumSystemVersion"] == installed_minimum()
    check = ["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(app)]
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # ad hoc unless built with SIGN: either way, sealed


def carried_modules(exe: Path) -> dict[str, int]:
    """Module name -> bytes of every Python module the bundle carries: its archive's and its extensions."""
    from bundle_trim import extension_module
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(exe)).open_embedded_archive("PYZ.pyz")
    carried = {name: length for name, (_, _, length) in archive.toc.items()}
    libraries = exe.parent / "_internal" if (exe.parent / "_internal").is_dir() else exe.parent.parent / "Frameworks"
    for path in libraries.rglob("*"):
        name = extension_module(path.relative_to(libraries))
        if name and path.is_file() and not path.is_symlink():
            carried[name] = path.stat().st_size
    return carried


def test_what_the_bundle_carries_and_never_imports_is_explained(exe, import_traces):
    """Runs last: the tests above ran the bundle as a person would, each process writing what it imported. A large
    package carried and never imported is either left out (build_app.spec, scripts/bundle_trim.py) or explained."""
    from bundle_trim import CARRIED_UNIMPORTED, LARGE_UNIMPORTED_BYTES, unimported_groups

    traces = list(import_traces.glob("*.txt"))
    if len(traces) < 5:
        pytest.skip("needs the traces of the other bundle tests: run the whole file")
    imported = {line for trace in traces for line in trace.read_text().split()}
    assert "qlora_gui.ui.main_window" in imported and "mlx_lm.generate" in imported  # the window and the CLI ran
    groups = unimported_groups(carried_modules(exe), imported)
    unexplained = {
        group: f"{count} modules, {size / 1e6:.2f} MB"
        for group, (count, size) in sorted(groups.items(), key=lambda g: -g[1][1])
        if size >= LARGE_UNIMPORTED_BYTES and group not in CARRIED_UNIMPORTED
    }
    assert not unexplained, (
        f"the bundle carries these and no traced run imported them: {unexplained}. Leave them out in build_app.spec "
        "or say in scripts/bundle_trim.py's CARRIED_UNIMPORTED why the app needs them"
    )
