"""The serving proxy: CML's ``POST /model`` endpoint in front of replica processes.

Run it with ``python -m cmlplan.serving.proxy --routes PATH``; it reads the routing table
described in docs/internals.md and re-reads it on SIGHUP.
"""
