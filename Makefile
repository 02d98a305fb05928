# The two commands of the course. Both install what they need first (scripts/install.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu

.PHONY: install course test preflight lab clean

install:
	bash scripts/install.sh $(VENV)

course: install  ## run notebooks 00 -> 06 on the embedded default (cpu profile) and write a report
	$(PY) -m helpers.course --profile $(PROFILE)

test: install  ## unit tests, notebook structure tests, every notebook under nbmake, one cpu run end to end, 04 in a browser
	bash scripts/install_browser.sh
	$(PY) -m pytest

preflight: install  ## instructors: check this machine for PROFILE (exit status 1 on a failure)
	$(PY) -m helpers.preflight --profile $(PROFILE)

lab: install  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks

clean:  ## remove the working folder (everything the course produced)
	rm -rf workspace
