#!/opt/parley/bin/python
"""Container health check: ``GET /healthz`` (or ``/readyz`` with ``--ready``) on this
container's own Parley port, read from the same configuration the process uses.

Exit 0 when the endpoint answers 200, else 1 with one line on stderr. Both endpoints stay
open when ``http.api_tokens`` is set, so no token is needed here.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from parley.settings import load_settings


def main(argv: list[str]) -> int:
    path = "/readyz" if "--ready" in argv else "/healthz"
    port = load_settings().http.port
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            if resp.status == 200:
                return 0
            print(f"{url}: HTTP {resp.status}", file=sys.stderr)
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read(300).decode(errors='replace')}", file=sys.stderr)
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
