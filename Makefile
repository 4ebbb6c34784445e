# The two commands a new user runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch/torchvision wheels for this machine lie on disk; pip picks them up.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install install-test zoo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH) || $(PIP) install -q "torch>=2.4" torchvision
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/pareco-fx slim examples/fashion_resnet.py --cost memory --out runs/demo --force

test: install
	$(PY) -m pytest -q -n 2 tests

zoo: install
	$(PY) -m pytest -q -n 2 -m "zoo or not zoo" tests/test_zoo.py

clean:
	rm -rf $(VENV) runs build *.egg-info
