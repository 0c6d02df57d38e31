"""The `augment` command: it parses arguments and delegates to the flows."""

import os

# Before Prefect is imported: a local or embedded server should not phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Prefect 3.8's client telemetry asks the server whether to send, and prints a notice on a
# terminal's first run whatever the answer; the convention every library reads turns it off.
os.environ.setdefault("DO_NOT_TRACK", "1")
