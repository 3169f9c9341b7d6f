"""The handoff record between agent processes (framework_upgrade) as the
Python side fills and reads it: a packed ring's used half (base_used)
goes through, and a record from an earlier agent, which has no such
field, still fills (its rings are split: 0)."""

from spdk_backend import engine
from spdk_backend._native import ffi


def _record(**vq):
    d = {"name": "c0", "socket": "/tmp/c0", "why": None, "regions": []}
    for key in engine._HANDOFF_SCALARS:
        d[key] = -1 if key.endswith("_fd") else 0
    v = {key: 0 for key in engine._HANDOFF_VQ}
    v.update(kickfd=-1, callfd=-1, **vq)
    d["vqs"] = [v]
    return d


def _roundtrip(d):
    h = ffi.new("struct sb_vhost_handoff *")
    engine._handoff_fill(h, d)
    return engine._handoff_dict(h)


def test_packed_base_goes_through():
    out = _roundtrip(_record(num=256, base=0x8005, base_used=0x8003))
    assert (out["vqs"][0]["base"], out["vqs"][0]["base_used"]) == (0x8005, 0x8003)


def test_record_of_an_earlier_agent_fills():
    d = _record(num=128, base=77)
    del d["vqs"][0]["base_used"]
    out = _roundtrip(d)
    assert (out["vqs"][0]["base"], out["vqs"][0]["base_used"]) == (77, 0)
