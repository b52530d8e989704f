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
	@echo "make notebooks  write chapters/NN_name.ipynb, the notebook edition (Binder, Colab), on a built book"
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

# The notebook edition, after editing a chapter (on a built book: the numbers come from the build's
# execution cache; a chapter missing from it is executed). First every chapter's source is put in
# the form JupyterLab saves, with its Colab install cell; then chapters/NN_name.ipynb (what the Binder
# and Colab buttons open) is written from it: plain notebooks, numbers and captions filled in.
notebooks: $(STAMP)
	$(BIN)/python scripts/add_install_cell.py
	$(BIN)/python scripts/make_notebooks.py

# JupyterLab on the chapters, MyST rendered (jupyterlab-myst), .md opened through jupytext. Works as
# root (containers); open the printed URL. LAB_ARGS="--port=8899" etc. pass through.
lab: $(STAMP)
	$(BIN)/jupyter lab --allow-root --no-browser --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/chapters $(LAB_ARGS)

clean:
	rm -rf _build
