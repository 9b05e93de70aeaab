"""Client libraries tried in processes of their own (tests/harness/test_tls.py, test_steering.py): a script that
prints one JSON line of what each library did, with the environment a handler would be given."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

TRUST_AND_PROXY_VARIABLES = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                             "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "NODE_EXTRA_CA_CERTS"}


def machine_env() -> dict[str, str]:
    """This machine's environment without any CA bundle or proxy of its own (a probe sees only what it is given)."""
    return {k: v for k, v in os.environ.items() if k not in TRUST_AND_PROXY_VARIABLES and "proxy" not in k.lower()}


async def probe(*command: str, env: dict[str, str]) -> dict[str, object]:
    """Run ``command`` to its exit (60 s at most) and return the JSON of its last line of output."""
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])
