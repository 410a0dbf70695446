"""Runs the scim2-tester SCIM compliance checker (PyPI `scim2-tester`, the engine of
`scim2-cli`'s `scim test`) against a SCIM server and prints every check's result as JSON.

The checks are scim2-tester's own; this wrapper only drives them the way `scim test` does and
prints what they found in a form a test can read (`scim test` prints coloured text and exits 1
on anything but SUCCESS, SKIPPED included).

Environment:
  SCIM_URL    the SCIM base URL (`{issuer}/scim/v2/connections/{connection_id}`)
  SCIM_TOKEN  the bearer token (in the environment, not on the command line, which other users
              of the machine can read)

Output (stdout): one JSON object
  {"scim2_tester": "<version>", "results": [{"status", "title", "resource_type", "tags",
   "reason", "data"}...]}
with `status` one of scim2-tester's Status names (SUCCESS, COMPLIANT, ACCEPTABLE, DEVIATION,
ERROR, CRITICAL, SKIPPED). Exit 0 when the checker ran (whatever it found), 2 when it could not.
"""

import json
import os
import sys
from importlib.metadata import version

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    url = os.environ.get("SCIM_URL")
    token = os.environ.get("SCIM_TOKEN")
    if not url or not token:
        print("scim_check: SCIM_URL and SCIM_TOKEN are required", file=sys.stderr)
        return 2
    http = Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )
    client = SyncSCIMClient(http)
    # As `scim test` does by default: unexpected status codes and content types fail a check.
    client.check_response_status_codes = True
    client.check_response_content_type = True
    results = check_server(client)
    out = {
        "scim2_tester": version("scim2-tester"),
        "results": [
            {
                "status": r.status.name,
                "title": r.title,
                "resource_type": r.resource_type,
                "tags": sorted(r.tags),
                "reason": r.reason,
                "data": None if r.data is None else repr(r.data)[:2000],
            }
            for r in results
        ],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
