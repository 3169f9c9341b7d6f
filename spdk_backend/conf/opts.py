"""Entry points of ``oslo-config-generator``, one namespace per service.

* ``spdk_backend.agent`` (:func:`list_agent_opts`): the agent's agent.conf.
* ``spdk_backend.cinder`` (:func:`list_cinder_opts`): the Cinder driver's
  options, read from the backend's section of cinder.conf (fallback
  ``[backend_defaults]``).
* ``spdk_backend.nova`` (:func:`list_nova_opts`): nova.conf's ``[spdk_vhost]``.

Each has its generator config in etc/oslo-config-generator/ and its sample in
etc/spdk-backend/.
"""

from spdk_backend.conf import agent
from spdk_backend.conf import cinder
from spdk_backend.conf import nova


def _pairs(module):
    return list(module.list_opts().items())


def list_agent_opts():
    """(group, options) pairs of agent.conf (spdk-backend-agent)."""
    return _pairs(agent)


def list_cinder_opts():
    """(group, options) pairs of the Cinder driver (cinder.conf)."""
    return _pairs(cinder)


def list_nova_opts():
    """(group, options) pairs of the Nova volume driver (nova.conf)."""
    return _pairs(nova)


# Every namespace, as setup.cfg declares it (the stale-sample test walks it).
NAMESPACES = {
    "spdk_backend.agent": list_agent_opts,
    "spdk_backend.cinder": list_cinder_opts,
    "spdk_backend.nova": list_nova_opts,
}
