"""The oslo-config-generator namespaces, their generator configs and samples.

One namespace per service (setup.cfg), one generator config each in
etc/oslo-config-generator/, and the sample each writes in etc/spdk-backend/
must be current and name the sections the service really reads.  The
agent's also takes oslo.log's namespace: it logs with oslo.log, whose
options are in [DEFAULT].
"""

import configparser
import importlib.metadata
import io
import os
import re
from unittest import mock

import pytest
from oslo_config import cfg
from oslo_config import generator
from oslo_log import _options as oslo_log_options

from spdk_backend.conf import agent as agent_conf
from spdk_backend.conf import cinder as cinder_conf
from spdk_backend.conf import nova as nova_conf
from spdk_backend.conf import opts
from spdk_backend.conf import volume as volume_conf

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GENERATOR_DIR = os.path.join(REPO, "etc", "oslo-config-generator")
SERVICES = ("agent", "cinder", "nova")
# Namespaces of other projects each service's sample takes too.
LIBRARY_NAMESPACES = {"agent": ["oslo.log"], "cinder": [], "nova": []}


def _generator_conf(service):
    return os.path.join(GENERATOR_DIR, "%s.conf" % service)


def _read_generator_conf(service):
    gen_conf = cfg.ConfigOpts()
    generator.register_cli_opts(gen_conf)
    gen_conf(["--config-file", _generator_conf(service)])
    return gen_conf


def _sample_path(service):
    return os.path.join(REPO, _read_generator_conf(service).output_file)


def _loader(namespace):
    """Ours from this checkout (the installed entry points may be an older
    install's), a library's from its entry point."""
    if namespace in opts.NAMESPACES:
        return opts.NAMESPACES[namespace]
    (entry,) = importlib.metadata.entry_points(group="oslo.config.opts", name=namespace)
    return entry.load()


def render_sample(service):
    gen_conf = _read_generator_conf(service)
    out = io.StringIO()
    loaders = [(ns, _loader(ns)) for ns in gen_conf.namespace]
    with mock.patch.object(generator, "_get_raw_opts_loaders", return_value=loaders):
        generator.generate(gen_conf, output_file=out)
    return out.getvalue()


def _sample_options(service):
    """{section: [option names]} of a sample (every option is commented out)."""
    sections = {}
    current = None
    with open(_sample_path(service)) as f:
        for line in f:
            m = re.match(r"^\[(.+)\]$", line.rstrip("\n"))
            if m:
                current = sections.setdefault(m.group(1), [])
                continue
            m = re.match(r"^#([a-z_0-9]+) =( |$)", line)
            if m:
                current.append(m.group(1))
    return sections


def test_one_generator_config_per_service():
    assert sorted(os.listdir(GENERATOR_DIR)) == sorted("%s.conf" % s for s in SERVICES)
    for service in SERVICES:
        gen_conf = _read_generator_conf(service)
        assert gen_conf.namespace == (["spdk_backend.%s" % service]
                                      + LIBRARY_NAMESPACES[service])
        assert gen_conf.output_file == "etc/spdk-backend/%s.conf.sample" % service


@pytest.mark.parametrize("service", SERVICES)
def test_sample_config_is_current(service):
    with open(_sample_path(service)) as f:
        current = f.read()
    assert current == render_sample(service), (
        "etc/spdk-backend/%s.conf.sample is stale; regenerate it with "
        "oslo-config-generator --config-file etc/oslo-config-generator/%s.conf"
        % (service, service))


def test_entry_points_declared():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    lines = [line.strip() for line in
             parser["options.entry_points"]["oslo.config.opts"].split("\n") if line.strip()]
    declared = dict(line.split(" = ") for line in lines)
    assert declared == {ns: "spdk_backend.conf.opts:%s" % func.__name__
                        for ns, func in opts.NAMESPACES.items()}
    assert set(declared) == {"spdk_backend.%s" % s for s in SERVICES}


def test_agent_sample_holds_the_agent_and_its_logging():
    # [DEFAULT]: oslo.log's options, every one (the agent sets logging up with
    # oslo.log); [agent]: the agent's.  The volume options are
    # cinder-volume's, not the agent's.
    ((group, log_opts),) = oslo_log_options.list_opts()
    assert group is None
    assert _sample_options("agent") == {
        "DEFAULT": [o.dest for o in log_opts],
        "agent": [o.dest for o in agent_conf.agent_opts]}
    for name in ("debug", "log_file", "log_dir", "log_config_append", "use_journal"):
        assert name in _sample_options("agent")["DEFAULT"], name


def test_agent_sample_marks_the_old_logging_options_deprecated():
    with open(_sample_path("agent")) as f:
        text = f.read()
    agent_part = text[text.index("\n[agent]\n"):]
    for name in ("log_file", "debug"):
        block = agent_part[:agent_part.index("\n#%s = " % name)]
        block = block[block.rindex("\n\n"):]
        assert "This option is deprecated for removal." in block, (name, block)
        assert "use [DEFAULT] %s" % name in block, (name, block)


def test_cinder_sample_uses_cinders_driver_options_group():
    # Cinder's own sample lists driver options under [backend_defaults], the
    # fallback of every backend section (cinder.volume.configuration).
    from_driver = cinder_conf.cinder_opts + volume_conf.volume_opts
    assert _sample_options("cinder") == {
        "DEFAULT": [], "backend_defaults": [o.dest for o in from_driver]}
    with open(_sample_path("cinder")) as f:
        head = f.read(1200)
    assert "[spdk-1]" in head and "enabled_backends" in head


def test_nova_sample_uses_the_spdk_vhost_group():
    assert _sample_options("nova") == {
        "DEFAULT": [], "spdk_vhost": [o.dest for o in nova_conf.nova_opts]}


def test_no_option_in_two_namespaces():
    seen = {}
    for ns, func in opts.NAMESPACES.items():
        for group, group_opts in func():
            for opt in group_opts:
                assert opt.help.strip(), (ns, opt.name)
                key = (getattr(group, "name", group), opt.dest)
                assert key not in seen, (key, seen.get(key), ns)
                seen[key] = ns
