"""Entry point of ``oslo-config-generator`` (``oslo.config.opts`` namespace)."""

from spdk_backend.conf import agent


def list_opts():
    """(group, options) pairs of every option module, for the sample config."""
    return [(group, opts) for group, opts in agent.list_opts().items()]
