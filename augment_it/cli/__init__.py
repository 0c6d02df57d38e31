"""The `augment` command: it parses arguments and delegates to the flows."""

import os

# Before Prefect is imported: a local or embedded server should not phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
