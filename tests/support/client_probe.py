"""Client libraries tried in processes of their own (tests/harness/test_tls.py, test_steering.py): a script that
prints one JSON line of what each library did, with the environment a handler would be given."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

from harness.fakes.steering import HOOK_VARIABLE

TRUST_AND_PROXY_VARIABLES = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                             "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "NODE_EXTRA_CA_CERTS"}


BASE_URL_VARIABLES = ("RTZR_API_BASE", "OPENAI_BASE_URL", "TTS_BASE_URL", "RTZR_API_HOST", "OPENAI_API_HOST")
HOOK_VARIABLES = ("PYTHONPATH", "NODE_OPTIONS", HOOK_VARIABLE)  # the steering mode's runtime hooks


def hard_coding_env(fakes, *, hooks: bool = True) -> dict[str, str]:
    """What a client that hard-codes the vendor hosts is given under ``--steer``: the machine's environment less any
    proxy or CA of its own, plus the fakes' less the base URLs (and less the runtime hooks unless ``hooks``)."""
    unset = BASE_URL_VARIABLES if hooks else BASE_URL_VARIABLES + HOOK_VARIABLES
    return {**machine_env(), **{k: v for k, v in fakes.env().items() if k not in unset}}


def machine_env() -> dict[str, str]:
    """This machine's environment without any CA bundle or proxy of its own (a probe sees only what it is given)."""
    return {k: v for k, v in os.environ.items() if k not in TRUST_AND_PROXY_VARIABLES and "proxy" not in k.lower()}


async def probe(*command: str, env: dict[str, str]) -> dict[str, object]:
    """Run ``command`` to its exit (60 s at most) and return the JSON of its last line of output."""
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])
