"""The agent's options: parsing, the generator entry point, the sample file."""

import configparser
import io
import os
from unittest import mock

import pytest
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_config import generator

from spdk_backend.conf import agent as agent_conf
from spdk_backend.conf import opts

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SAMPLE = os.path.join(REPO, "etc", "spdk-backend", "agent.conf.sample")
GENERATOR_CONF = os.path.join(REPO, "etc", "oslo-config-generator", "agent.conf")


@pytest.fixture
def conf():
    c = cfg.ConfigOpts()
    agent_conf.register_opts(c)
    fix = config_fixture.Config(c)
    fix.setUp()
    yield fix
    fix.cleanUp()


def render_sample():
    gen_conf = cfg.ConfigOpts()
    generator.register_cli_opts(gen_conf)
    gen_conf(["--config-file", GENERATOR_CONF])
    out = io.StringIO()
    with mock.patch.object(generator, "_get_raw_opts_loaders",
                           return_value=[("spdk_backend.agent", opts.list_opts)]):
        generator.generate(gen_conf, output_file=out)
    return out.getvalue()


def test_sample_config_is_current():
    with open(SAMPLE) as f:
        current = f.read()
    assert current == render_sample(), (
        "etc/spdk-backend/agent.conf.sample is stale; regenerate it with "
        "oslo-config-generator --config-file etc/oslo-config-generator/agent.conf")


def test_entry_point_declared():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = parser["options.entry_points"]["oslo.config.opts"].split("\n")
    assert "spdk_backend.agent = spdk_backend.conf.opts:list_opts" in [
        line.strip() for line in lines]


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
    groups = {getattr(g, "name", g): o for g, o in opts.list_opts()}
    assert groups["agent"] == agent_conf.agent_opts
    for opt in agent_conf.agent_opts:
        assert opt.help.strip(), opt.name
