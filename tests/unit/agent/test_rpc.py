import pytest

from spdk_backend.agent import jsonrpc
from spdk_backend.agent import methods  # noqa: F401
from spdk_backend.agent import rpc


def decode(name, params):
    return rpc.decode(rpc.REGISTRY[name], params)


def test_every_method_documents_and_registers_once():
    assert len(rpc.REGISTRY) >= 25
    for meth in rpc.REGISTRY.values():
        assert meth.name.islower() and "_" in meth.name


@pytest.mark.parametrize("name,params,words", [
    ("bdev_malloc_create", {"block_size": 512}, ["missing", "num_blocks"]),
    ("bdev_malloc_create", {"num_blocks": 1, "block_size": 512, "colour": 1},
     ["unknown parameter", "colour"]),
    ("bdev_malloc_create", {"num_blocks": "8", "block_size": 512},
     ["num_blocks", "integer", "a string"]),
    ("bdev_malloc_create", {"num_blocks": True, "block_size": 512},
     ["num_blocks", "a boolean"]),
    ("bdev_malloc_create", {"num_blocks": -1, "block_size": 512},
     ["num_blocks", "out of range"]),
    ("bdev_malloc_create", {"num_blocks": 1, "block_size": 1 << 32},
     ["block_size", "out of range"]),
    ("bdev_malloc_create", {"num_blocks": 1, "block_size": 512, "md_size": 8},
     ["md_size", "not supported"]),
    ("bdev_malloc_create", {"num_blocks": 1, "block_size": 512, "uuid": "nope"},
     ["uuid", "not a UUID"]),
    ("bdev_get_bdevs", {"name": ""}, ["name", "empty"]),
    ("bdev_get_bdevs", {"name": None}, ["name", "null"]),
    ("vhost_create_blk_controller", {"ctrlr": "../x", "dev_name": "b"},
     ["ctrlr", "valid controller name"]),
    ("vhost_create_blk_controller", {"ctrlr": "c", "dev_name": "b", "packed_ring": 1},
     ["packed_ring"]),
    ("bdev_get_iostat", {"names": ["a", 1]}, ["names", "non-string"]),
    ("framework_get_config", [1], ["named parameters"]),
])
def test_invalid_params(name, params, words):
    with pytest.raises(jsonrpc.InvalidParams) as err:
        decode(name, params)
    assert err.value.code == -32602
    for word in words:
        assert word in err.value.message


def test_defaults_are_none_and_spdk_client_defaults_accepted():
    p = decode("bdev_malloc_create", {"num_blocks": 8, "block_size": 512,
                                      "md_interleave": False, "dif_is_head_of_md": False})
    assert p["name"] is None and p["num_blocks"] == 8 and p["md_interleave"] is False
    assert rpc.present(p) == {"num_blocks": 8, "block_size": 512, "md_interleave": False,
                              "dif_is_head_of_md": False}


def test_empty_array_params_mean_none():
    assert decode("spdk_get_version", []) == {}
    assert decode("spdk_get_version", None) == {}
