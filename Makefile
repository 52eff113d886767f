# `make run` and `make test` each build the virtual environment when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# MLX's compute backend on Linux: cpu, or cuda for an NVIDIA GPU (CUDA 13). macOS always uses Metal.
BACKEND ?= cpu
# The newest Python 3.10+ on PATH that can make a venv: a Mac's own python3 is often 3.9, too old for MLX.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3.10 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
	&& { echo $$p; break; }; done)

.PHONY: run test app clean

# The one tool that reads uv.lock; pinned like everything it installs.
UV_VERSION := 0.13.10

.PHONY: lock
$(STAMP): pyproject.toml uv.lock
	@bash scripts/setup_system.sh
	@test -x $(PY) || test -n "$(PYTHON)" || { echo "QLoRA Studio needs Python 3.10 or newer and found none on PATH:" \
	  "install one (macOS: brew install python@3.12, or the installer from python.org; Debian/Ubuntu:" \
	  "sudo apt install python3 python3-venv) and run make again" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"
	# Exactly the locked versions (--frozen: never re-resolved here); --inexact leaves pip and uv in place.
	UV_PROJECT_ENVIRONMENT=$(VENV) $(VENV)/bin/uv sync -q --frozen --inexact --extra dev --extra vision --extra $(BACKEND)
	touch $(STAMP)

# Upgrading is deliberate: every package to its newest allowed version, written to uv.lock for a commit of its own.
lock: $(STAMP)
	$(VENV)/bin/uv lock --upgrade

run: $(STAMP)
	$(VENV)/bin/qlora-gui

# The lock, lint, format and types first (seconds), then the tests.
test: $(STAMP)
	$(VENV)/bin/uv lock --check   # pyproject.toml and uv.lock agree: a dependency changed without `uv lock` fails here
	$(PY) -m ruff check qlora_gui tests bench scripts
	$(PY) -m ruff format --check qlora_gui tests bench scripts
	$(PY) -m mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra -n auto --maxprocesses=4   # one worker per core: the suite is CPU-bound and single-threaded per test

# The double-click bundle: dist/QLoRA Studio.app on macOS, dist/qlora-studio/ on Linux.
# macOS: SIGN="Developer ID Application: NAME (TEAMID)" signs it (hardened runtime); MACOS_MIN=14.0 asks for
# a fixed minimum macOS, refused when the installed MLX wheels need a newer one (the default reads them).
SIGN     ?=
MACOS_MIN ?=
app: $(STAMP)
	$(PY) scripts/build_app.py --force $(if $(SIGN),--sign "$(SIGN)") $(if $(MACOS_MIN),--macos-minimum "$(MACOS_MIN)")

clean:
	rm -rf $(VENV) build dist *.egg-info
