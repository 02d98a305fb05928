"""Helpers for the xtuner-course notebooks.

Import modules qualified, e.g. ``from helpers import data, xconfig`` and call
``data.build_self_cognition(...)``, so a reader always sees where a function lives.
Heavy libraries (torch, transformers, xtuner) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
