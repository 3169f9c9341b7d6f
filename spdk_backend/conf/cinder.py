"""Options of the Cinder volume driver (a cinder.conf backend section)."""

from oslo_config import cfg

cinder_group = cfg.OptGroup(
    "spdk_vhost_cinder",
    title="spdk-backend Cinder driver options",
    help="""
Options of ``spdk_backend.cinder.driver.SpdkVhostDriver``; set them in the
backend's section of cinder.conf, together with the ``spdk_vhost_volume_*``
options.
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


def register_opts(conf):
    conf.register_group(cinder_group)
    conf.register_opts(cinder_opts, group=cinder_group)


def list_opts():
    return {cinder_group: cinder_opts}
