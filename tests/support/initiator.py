"""Run native/build/tools/vhost_initiator from tests.

``run_initiator(binary, socket, *args, timeout=120)`` returns an
:class:`InitiatorResult` (``rc``, ``stdout``, ``stderr``, ``json``): with
``--json`` in ``args`` the workload's JSON object (or, for ``--hostile``, a
list of one object per case) is parsed into ``json``.

Exit codes: 0 ok (hostile: every case ran), 1 I/O errors or verify
mismatches, 2 usage, 3 connection/protocol failure.
"""

import collections
import json
import subprocess

InitiatorResult = collections.namedtuple("InitiatorResult",
                                         "rc stdout stderr json")


def _parse(stdout, hostile):
    if hostile:
        return [json.loads(line) for line in stdout.splitlines()
                if line.startswith("{")]
    start = stdout.find("{")
    if start < 0:
        return None
    return json.loads(stdout[start:])


def run_initiator(binary, socket, *args, timeout=120):
    """Run the initiator against `socket`; never leaves it running."""
    cmd = [str(binary), "--socket", str(socket)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout)
    parsed = None
    if "--json" in args:
        try:
            parsed = _parse(proc.stdout, "--hostile" in args)
        except ValueError as exc:
            raise AssertionError("bad JSON from %s: %s\n%s"
                                 % (cmd, exc, proc.stdout))
    return InitiatorResult(proc.returncode, proc.stdout, proc.stderr, parsed)


def hostile_cases(binary):
    """Names of the hostile cases the initiator knows."""
    out = subprocess.run([str(binary), "--hostile", "list"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
