"""The serving proxy's defaults, in one place: the Proxy spec, the routes file and the proxy read them.

This module ships inside builds and proxy images with the rest of ``cmlplan.serving``, so it
imports nothing.
"""

BUSY_TIMEOUT = 30.0  # seconds a request waits for a free replica before 429 model.busy
REQUEST_TIMEOUT = 30.0  # seconds a prediction may take before 504
MAX_REQUEST_BYTES = 5_000_000  # larger request bodies answer 413
HEADER_TIMEOUT = 60.0  # seconds to receive a request line and headers once they start, then 408 (nginx: 60 s)
BODY_TIMEOUT = 60.0  # seconds to receive a body after its headers, then 408 (nginx: 60 s)
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle keep-alive connection stays open (nginx: 75 s)
METRICS_RETENTION_DAYS = 14  # technical metrics stay per minute this long, then hourly
METRICS_FLUSH_SECONDS = 10.0  # how often a proxy writes its request counts and samples replica CPU/memory
# the proxy's environment variable holding the metrics store's PostgreSQL DSN (never in the routes file)
METRICS_DSN_ENV = "CMLPLAN_METRICS_DSN"
