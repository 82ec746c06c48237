# Two commands: `make demo` runs the main job on built-in defaults, `make test` runs the tests.
# Both create .venv with the pinned dependencies on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test bench clean

$(STAMP): pyproject.toml src/fmblocks/tokenizers/_bpe_fast.c  # pip install -e . also compiles the C extension
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fmblocks demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) runs bench/results/*.tmp src/fmblocks/tokenizers/*.so
