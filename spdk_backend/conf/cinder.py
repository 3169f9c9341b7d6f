"""Options of the Cinder volume driver (a cinder.conf backend section).

The driver reads them, and the volume options of
:mod:`spdk_backend.conf.volume`, with Cinder's
``configuration.append_config_values``: from the backend's own section (the
name in ``[DEFAULT] enabled_backends``, such as ``[spdk-1]``), falling back
to ``[backend_defaults]``.  The sample lists them under ``[backend_defaults]``,
the group Cinder's own sample lists its driver options under.
"""

from oslo_config import cfg

from spdk_backend.conf import volume

SHARED_GROUP = "backend_defaults"  # cinder.volume.configuration.SHARED_CONF_GROUP

backend_group = cfg.OptGroup(
    SHARED_GROUP,
    title="spdk-backend Cinder driver options",
    help="""
Options of ``spdk_backend.cinder.driver.SpdkVhostDriver`` (cinder.conf).

Set them in the backend's own section, the name listed in ``[DEFAULT]
enabled_backends`` (for example ``[spdk-1]``, next to ``volume_driver =
spdk_backend.cinder.driver.SpdkVhostDriver``); a value missing there is taken
from ``[backend_defaults]``, as for every Cinder driver.  There is no
``[spdk_vhost_cinder]`` section: the driver never read one.
""")

cinder_opts = [
    cfg.StrOpt(
        "spdk_vhost_agent_socket",
        default="/var/run/spdk-backend/agent.sock",
        help="""
RPC socket of the spdk-backend-agent that serves this backend's volumes.

Possible values:

* The path the agent's ``[agent] rpc_socket`` names; cinder-volume's user
  must be able to connect (see ``[agent] rpc_socket_group``).

Related options:

* ``spdk_vhost_agent_timeout``
"""),
    cfg.IntOpt(
        "spdk_vhost_agent_timeout",
        default=60,
        min=1,
        help="""
Seconds to wait for the agent to answer one call (and to accept a connection
while it is restarting).

Possible values:

* An integer >= 1.
"""),
    cfg.IntOpt(
        "spdk_vhost_queues",
        default=1,
        min=1,
        max=64,
        help="""
Number of virtqueues of the guest's disk (``<driver queues=N>``), handed to
the compute host in the connection info.

Possible values:

* 1 to 64; more queues than guest vCPUs bring nothing.
"""),
]


def list_opts():
    """The driver's options, this module's and the volume backends', under the
    group Cinder's sample lists driver options under."""
    return {backend_group: cinder_opts + volume.volume_opts}
