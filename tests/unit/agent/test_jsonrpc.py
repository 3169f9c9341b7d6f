import json

import pytest

from spdk_backend.agent import jsonrpc


def feed_all(splitter, chunks):
    out = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


def test_one_byte_at_a_time():
    data = b'{"jsonrpc":"2.0","method":"a","params":{"s":"x}{]\\"["},"id":1}\n'
    out = feed_all(jsonrpc.FrameSplitter(), [data[i:i + 1] for i in range(len(data))])
    assert [json.loads(t) for t in out] == [json.loads(data)]


def test_many_values_in_one_read_without_separators():
    reqs = [{"jsonrpc": "2.0", "method": "m%d" % i, "id": i} for i in range(50)]
    data = "".join(json.dumps(r) for r in reqs).encode()
    out = jsonrpc.FrameSplitter().feed(data)
    assert [json.loads(t) for t in out] == reqs


def test_batch_array_and_nested_containers():
    data = b' [ {"a": [1, {"b": "]"}]}, {"c": {}} ]  {"d": 1}'
    out = jsonrpc.FrameSplitter().feed(data)
    assert [json.loads(t) for t in out] == [[{"a": [1, {"b": "]"}]}, {"c": {}}], {"d": 1}]


def test_escaped_backslash_before_quote_split_across_reads():
    data = b'{"s":"a\\\\"}{"t":"\\"}"}'
    for cut in range(1, len(data)):
        out = feed_all(jsonrpc.FrameSplitter(), [data[:cut], data[cut:]])
        assert [json.loads(t) for t in out] == [{"s": "a\\"}, {"t": '"}'}], cut


def test_multibyte_utf8_split_across_reads():
    data = json.dumps({"name": "vol\u00e9\u4e2d"}, ensure_ascii=False).encode()
    for cut in range(1, len(data)):
        out = feed_all(jsonrpc.FrameSplitter(), [data[:cut], data[cut:]])
        assert json.loads(out[0]) == {"name": "vol\u00e9\u4e2d"}


def test_incomplete_value_waits():
    splitter = jsonrpc.FrameSplitter()
    assert splitter.feed(b'{"a": [1, 2') == []
    assert splitter.feed(b']}') == ['{"a": [1, 2]}']


def test_invalid_utf8_is_a_parse_error():
    out = jsonrpc.FrameSplitter().feed(b'{"a": "\xff"}')
    assert isinstance(out[-1], jsonrpc.ParseError)


def test_stray_closing_bracket_is_a_parse_error():
    out = jsonrpc.FrameSplitter().feed(b'{"a":1} ] {"b":2}')
    assert out[0] == '{"a":1}'
    assert isinstance(out[1], jsonrpc.ParseError)
    assert len(out) == 2


def test_oversized_request_is_a_parse_error():
    splitter = jsonrpc.FrameSplitter(max_request=100)
    out = splitter.feed(b'{"a": "' + b"x" * 200)
    assert isinstance(out[-1], jsonrpc.ParseError)
    assert "larger than 100" in out[-1].message


def test_top_level_scalar_is_framed():
    out = jsonrpc.FrameSplitter().feed(b'123 "str" {"a":1}')
    assert out == ["123", '"str"', '{"a":1}']


def test_loads_rejects_nan_and_garbage():
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.loads('{"a": NaN}')
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.loads('{"a": tru}')


def test_dumps_is_compact_with_newline():
    assert jsonrpc.dumps({"a": 1}) == b'{"a":1}\n'


@pytest.mark.parametrize("obj,reply_id", [
    ([], None),
    ({"method": "x", "id": 1}, 1),                       # no jsonrpc
    ({"jsonrpc": "1.0", "method": "x", "id": 1}, 1),
    ({"jsonrpc": "2.0", "method": 5, "id": "a"}, "a"),
    ({"jsonrpc": "2.0", "method": "x", "params": 3, "id": 2}, 2),
    ({"jsonrpc": "2.0", "method": "x", "id": True}, None),
    ({"jsonrpc": "2.0", "method": "x", "id": {"a": 1}}, None),
    ({"jsonrpc": "2.0", "method": "x", "id": 1, "extra": 0}, 1),
])
def test_invalid_requests(obj, reply_id):
    with pytest.raises(jsonrpc.RpcError) as err:
        jsonrpc.parse_request(obj)
    assert err.value.code == jsonrpc.INVALID_REQUEST
    assert err.value.req_id == reply_id


def test_notification_and_ids():
    req = jsonrpc.parse_request({"jsonrpc": "2.0", "method": "x"})
    assert req.notification and req.req_id is None
    req = jsonrpc.parse_request({"jsonrpc": "2.0", "method": "x", "id": None})
    assert not req.notification
    req = jsonrpc.parse_request({"jsonrpc": "2.0", "method": "x", "id": "abc",
                                 "params": {"a": 1}})
    assert req.req_id == "abc" and req.params == {"a": 1}
