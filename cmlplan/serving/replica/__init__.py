"""The replica runtime: serves one model function over HTTP, one prediction at a time.

This package is copied into model build venvs, so it imports only the stdlib plus
uvloop/httptools and psutil (``buildfiles.RUNTIME_PACKAGES``). Run it with ``python -m cmlplan.serving.replica``; the HTTP contract is
pinned in docs/internals.md.
"""
