"""Directory of the ``cdsw`` shim; see cdsw.py. Put ``SHIM_DIR`` on sys.path to make it importable."""

from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent
