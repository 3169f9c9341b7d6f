"""Loading volume backends through stevedore."""

import pytest

from spdk_backend import exception
from spdk_backend.volume import manager
from spdk_backend.volume.backends import file as file_backend
from spdk_backend.volume.backends import malloc as malloc_backend


def test_known_backends_are_installed():
    assert {"file", "malloc"} <= set(manager.available_backends())


def test_load_file(tmp_path):
    backend = manager.load_backend("file", None, volume_dir=str(tmp_path), block_size=4096)
    assert isinstance(backend, file_backend.FileBackend)
    assert backend.block_size == 4096
    assert backend.volume_dir == str(tmp_path)


def test_load_malloc():
    assert isinstance(manager.load_backend("malloc", None), malloc_backend.MallocBackend)


def test_unknown_backend_is_a_clear_configuration_error():
    with pytest.raises(exception.VolumeBackendNotFound) as info:
        manager.load_backend("nosuch", None)
    assert isinstance(info.value, exception.ConfigurationError)
    assert "nosuch" in str(info.value) and "file" in str(info.value)


def test_backend_refusing_its_config_is_a_configuration_error():
    with pytest.raises(exception.ConfigurationError):
        manager.load_backend("file", None, volume_dir=None)
    with pytest.raises(exception.ConfigurationError):
        manager.load_backend("file", None, volume_dir="/tmp", block_size=1000)
