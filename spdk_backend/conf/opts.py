"""Entry point of ``oslo-config-generator`` (``oslo.config.opts`` namespace)."""

from spdk_backend.conf import agent
from spdk_backend.conf import cinder
from spdk_backend.conf import nova
from spdk_backend.conf import volume


def list_opts():
    """(group, options) pairs of every option module, for the sample config."""
    return [(group, opts)
            for module in (agent, volume, cinder, nova)
            for group, opts in module.list_opts().items()]
