# `make run` and `make test` each build the virtual environment when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# MLX's compute backend on Linux: cpu, or cuda for an NVIDIA GPU (CUDA 13). macOS always uses Metal.
BACKEND ?= cpu

.PHONY: run test app clean

$(STAMP): pyproject.toml
	@bash scripts/setup_system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,$(BACKEND)]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/qlora-gui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra

# The double-click bundle: dist/QLoRA Studio.app on macOS, dist/qlora-studio/ on Linux.
app: $(STAMP)
	$(PY) scripts/build_app.py --force

clean:
	rm -rf $(VENV) build dist *.egg-info
