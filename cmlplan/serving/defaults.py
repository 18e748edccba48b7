"""The serving proxy's defaults, in one place: the Proxy spec, the routes file and the proxy read them.

This module ships inside builds and proxy images with the rest of ``cmlplan.serving``, so it
imports nothing.
"""

BUSY_TIMEOUT = 30.0  # seconds a request waits for a free replica before 429 model.busy
REQUEST_TIMEOUT = 30.0  # seconds a prediction may take before 504
MAX_REQUEST_BYTES = 5_000_000  # larger request bodies answer 413
