"""Container health check, standard library only (it runs every 30 s: importing Prefect would cost
seconds of CPU each time). Healthy when the URL answers 2xx: the first argument, else the Prefect
API the container talks to ($PREFECT_API_URL/health)."""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    url = sys.argv[1] if len(sys.argv) > 1 else (f"{api}/health" if api else "")
    if not url:
        print("unhealthy: no URL given and PREFECT_API_URL is not set")
        return 1
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if 200 <= response.status < 300 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
