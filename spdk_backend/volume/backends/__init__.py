"""One volume backend per module, loaded through the ``spdk_backend.volume_backends``
stevedore namespace (see :mod:`spdk_backend.volume.manager`)."""
