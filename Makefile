# The two commands a new user needs:  make book  and  make test.
# Both create .venv and install the pinned requirements on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# One BLAS/OpenMP thread per process: on two cores, threaded BLAS busy-waits on the many small
# matrix products of the chapters and runs them several times slower.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

STAMP   = $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: book test bench clean lab help student notebooks

help:
	@echo "make book   build the website into _build/html (executes every chapter)"
	@echo "make test   run every test (library, chapters, book build, browser)"
	@echo "make lab    open the chapters in JupyterLab"
	@echo "make bench  print the speed and memory measurements"
	@echo "make student    write student/NN_name.ipynb: the chapters without their solutions"
	@echo "make notebooks  regenerate chapters/NN_name.ipynb (for Binder and Colab) from the .md chapters"
	@echo "make clean  remove the build and the execution cache"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_batchnorm.py
	$(BIN)/python benchmarks/bench_book.py

# For a class: every chapter as a notebook with its solutions removed (student/ is git-ignored).
student: $(STAMP)
	$(BIN)/python scripts/make_student.py

# After editing a chapter: its first cell installs bnlib on Colab, and the .ipynb beside it
# (what the Binder and Colab buttons open) is regenerated from the .md, without outputs.
notebooks: $(STAMP)
	$(BIN)/python scripts/add_install_cell.py
	$(BIN)/python scripts/make_notebooks.py

lab: $(STAMP)
	$(BIN)/python -m pip install jupyterlab
	$(BIN)/jupyter lab chapters/

clean:
	rm -rf _build
