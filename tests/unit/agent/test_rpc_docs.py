"""docs/agent.md's method table lists exactly the methods the agent serves,
marks ours, and names the extensions each takes."""

import pathlib
import re

from spdk_backend.agent import methods as agent_methods  # noqa: F401
from spdk_backend.agent import rpc
from tests.support import spdk_rules

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "agent.md"


def _table():
    """{method: (ours, extensions, also accepted)} from the Methods table."""
    text = DOC.read_text()
    section = text.split("\n## Methods\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, params_cell = line.split("|")[1:3]
        ours = "(ours)" in names_cell
        extensions = set()
        m = re.search(r"extensions? ((?:`\w+`(?:, )?)+)", params_cell)
        if m:
            extensions = set(re.findall(r"`(\w+)`", m.group(1)))
        accepted = set()
        m = re.search(r"also accepted: ((?:`\w+`(?:, )?)+)", params_cell)
        if m:
            accepted = set(re.findall(r"`(\w+)`", m.group(1)))
        for name in re.findall(r"`(\w+)`", names_cell):
            assert name not in rows, "%s is listed twice" % name
            rows[name] = (ours, extensions, accepted)
    return rows


def test_the_table_lists_every_method_the_agent_serves():
    rows = _table()
    assert set(rows) == set(rpc.REGISTRY)
    # bdev_rbd_* included: the rbd bdev's methods are the agent's too.
    assert {m for m in rpc.REGISTRY if m.startswith("bdev_rbd_")} <= set(rows)


def test_the_table_marks_ours_and_names_the_extensions():
    rows = _table()
    assert {m for m, (ours, _, _) in rows.items() if ours} == spdk_rules.OURS
    for method, (_, extensions, accepted) in rows.items():
        assert extensions == spdk_rules.EXTENSIONS.get(method, set()), method
        assert accepted == spdk_rules.ACCEPTED_ONLY.get(method, set()), method
        # Every parameter the table names is one the method takes.
        if method in rpc.REGISTRY:
            takes = {p.name for p in rpc.REGISTRY[method].params}
            assert extensions | accepted <= takes, method
