"""Every option of spdk-backend, one module per area (see STYLE.md rule 8)."""

from oslo_config import cfg

from spdk_backend.conf import agent

CONF = cfg.CONF

agent.register_opts(CONF)
