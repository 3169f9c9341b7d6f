"""The agent's options: parsing and listing (the samples: test_samples.py)."""

import pytest
from oslo_config import cfg
from oslo_config import fixture as config_fixture

from spdk_backend.conf import agent as agent_conf
from spdk_backend.conf import opts


@pytest.fixture
def conf():
    c = cfg.ConfigOpts()
    agent_conf.register_opts(c)
    fix = config_fixture.Config(c)
    fix.setUp()
    yield fix
    fix.cleanUp()


def test_defaults(conf):
    a = conf.conf.agent
    assert a.core_mask == "0x1"
    assert a.rpc_socket == "/var/run/spdk-backend/agent.sock"
    assert a.rpc_socket_mode == 0o660
    assert a.rpc_socket_group is None


def test_socket_mode_is_octal(conf):
    conf.config(rpc_socket_mode="0600", group="agent")
    assert conf.conf.agent.rpc_socket_mode == 0o600


@pytest.mark.parametrize("bad", ["0999", "rw", "77777"])
def test_bad_socket_mode_rejected(tmp_path, bad):
    path = tmp_path / "agent.conf"
    path.write_text("[agent]\nrpc_socket_mode = %s\n" % bad)
    c = cfg.ConfigOpts()
    agent_conf.register_opts(c)
    c(["--config-file", str(path)])
    with pytest.raises(cfg.ConfigFileValueError):
        c.agent.rpc_socket_mode


def test_agent_options_listed_with_help():
    groups = {getattr(g, "name", g): o for g, o in opts.list_agent_opts()}
    assert groups == {"agent": agent_conf.agent_opts}
    for opt in agent_conf.agent_opts:
        assert opt.help.strip(), opt.name
