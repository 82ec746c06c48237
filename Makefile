# Two commands: `make demo` runs the main job on built-in defaults, `make test` runs the tests.
# Both create .venv with the pinned dependencies on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test browser bench gpu clean

$(STAMP): pyproject.toml src/fmblocks/tokenizers/_bpe_fast.c  # pip install -e . also compiles the C extension
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fmblocks demo

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

# The browser tests (tests/browser) drive Debian's chromium through chromium-driver; installed once, as root.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	  || echo "browser tests will be skipped: apt-get could not install chromium chromium-driver"; \
	else echo "browser tests will be skipped: chromium/chromium-driver are missing and installing them needs root and apt-get"; fi

bench: $(STAMP)
	$(VENV)/bin/python -m bench $(BENCH)

# On a CUDA machine: the gpu-marked tests and the training and attention benchmarks in bf16 (bench/gpu.sh, < 8 min).
gpu: $(STAMP)
	bash bench/gpu.sh

clean:
	rm -rf $(VENV) runs bench/results/*.tmp src/fmblocks/tokenizers/*.so
