# The two commands of the course. Both install what they need first (scripts/install.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
LAB_IP ?=
LAB_PORT ?=
FORCE ?=
PATHS ?=

.PHONY: install course test preflight lab clean learner reset

install:  ## make .venv on the active Python (keeping its torch), install the stack, register the Jupyter kernel
	bash scripts/install.sh $(VENV)

course: install  ## run notebooks 00 -> 10 on the embedded default (cpu profile) and write a report
	$(PY) -m helpers.course --profile $(PROFILE)

test: install  ## unit tests, notebook structure tests, every notebook under nbmake, one cpu run end to end, 04 and the web demo in a browser
	bash scripts/install_browser.sh
	$(PY) -m pytest

preflight: install  ## instructors: check this machine for PROFILE (exit status 1 on a failure)
	$(PY) -m helpers.preflight --profile $(PROFILE)

lab: install  ## JupyterLab on notebooks/ (as root too); LAB_IP / LAB_PORT choose where it listens
	$(PY) -m helpers.lab $(if $(LAB_IP),--ip $(LAB_IP)) $(if $(LAB_PORT),--port $(LAB_PORT))

clean:  ## delete the working folder in use ($$COURSE_WORKDIR, ./workspace, or AutoDL's data disk) and say which
	$(if $(wildcard $(PY)),$(PY),python3) -m helpers.workspace clean

learner: install  ## instructors: regenerate learner/ from notebooks/ (FORCE=1 replaces copies with uncommitted edits, backed up first)
	$(PY) scripts/exercises.py learner $(if $(FORCE),--force)

reset: install  ## restore notebooks/, learner/ and datasets/ (or PATHS) to the shipped version; your edits go to backups/ first
	$(PY) scripts/exercises.py reset $(PATHS)
