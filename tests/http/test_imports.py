"""What the webhook imports: only what its configuration needs (issue 18, start-up and memory).

The `kubernetes` client (about 15 MiB resident and 0.2-0.4 s to import), `cryptography` (10 MiB),
the policy and rule machinery, the IRSA helpers and the other commands are imported at the edges
that need them. These tests run the real serve path in a child process, with the file source,
up to its first mutated answer, and list what it imported, so that a new top-level import
cannot silently bring the cost back. A second run with `--policy` shows the probe sees a lazy
import when the configuration does need it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.http.processes import Files
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# Run in the child: serve, POST one review once the port answers, record sys.modules, SIGTERM.
PROBE = r"""
import http.client, json, os, signal, ssl, sys, threading, time
from webhook.cli import run

port, ca, review = int(sys.argv[1]), sys.argv[2], sys.argv[3]
seen = {}

def probe():
    context = ssl.create_default_context(cadata=ca)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "answer" not in seen:
        try:
            client = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
            client.request("POST", "/mutate", review, {"Content-Type": "application/json"})
            seen["answer"] = json.loads(client.getresponse().read())["response"]
        except OSError:
            time.sleep(0.05)
    seen["modules"] = sorted(sys.modules)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
with open(os.devnull, "w") as devnull:
    status = run(sys.argv[4:], stdout=devnull)
print(json.dumps({"status": status, **seen}))
"""

# Not needed by a webhook with the file source and no policy, rule or certificate bootstrap.
NOT_NEEDED = (
    "kubernetes",
    "cryptography",
    "jsonpatch",
    "webhook.admission.policy",
    "webhook.admission.rules",
    "webhook.certificates.issuing",
    "webhook.certificates.bootstrap",
    "webhook.irsa",
    "webhook.broker",
    "webhook.agent",
    "webhook.cli.mutate",
    "webhook.cli.oidc",
    "webhook.cli.trust_policy",
    "webhook.cli.certs",
    "webhook.audit",
    "difflib",
)


def serve_and_list(files: Files, *flags: str) -> dict[str, object]:
    port = free_port()
    argv = [
        f"--port={port}",
        f"--metrics-port={free_port()}",
        "--in-cluster=false",
        "--shutdown-delay=0s",
        f"--tls-cert={files.cert}",
        f"--tls-key={files.key}",
        f"--service-accounts={files.service_accounts}",
        *flags,
    ]
    review = (REPO / "dev" / "review.json").read_text()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(port), files.ca.decode(), review, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 0
    answer = result.get("answer")
    assert isinstance(answer, dict)
    assert "patch" in answer, answer  # the injection path ran, not only the start-up
    return result


def _loaded(modules: object, prefix: str) -> bool:
    assert isinstance(modules, list)
    return any(name == prefix or name.startswith(prefix + ".") for name in modules)


def test_the_file_source_webhook_loads_no_cluster_client_no_crypto_and_no_rules(files: Files):
    modules = serve_and_list(files)["modules"]
    assert [name for name in NOT_NEEDED if _loaded(modules, name)] == []


def test_a_policy_loads_the_policy_machinery_and_still_not_the_cluster_client(files: Files):
    modules = serve_and_list(files, f"--policy={REPO / 'examples' / 'policy' / 'shop.yaml'}")
    assert _loaded(modules["modules"], "webhook.admission.policy")
    assert not _loaded(modules["modules"], "kubernetes")
