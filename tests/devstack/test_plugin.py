"""The devstack plugin: shellcheck, and each phase run in a sandbox.

devstack's helpers are replaced by the stand-ins of standins.sh (iniset
edits real files, run_process starts the real agent), and so are the steps
of stack.sh that write the same files as the plugin, run in stack.sh's
order (STACK_SH); the test then reads the files the services would read
with the options' own definitions.
"""

import configparser
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
from oslo_config import cfg

from spdk_backend.agent.client import AgentClient
from spdk_backend.conf import agent as agent_conf
from spdk_backend.conf import cinder as cinder_conf
from spdk_backend.conf import nova as nova_conf
from spdk_backend.conf import volume as volume_conf

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "devstack"
HERE = pathlib.Path(__file__).resolve().parent

# devstack's stack.sh, as far as this plugin is concerned, in its order:
# run_phase stack pre-install; configure_cinder (lib/cinder calls
# configure_cinder_backend_spdk_vhost); configure_nova (nova.conf recreated,
# compute_driver=libvirt.LibvirtDriver); run_phase stack install; run_phase
# stack post-config; start_nova (start_nova_compute copies nova.conf over
# nova-cpu.conf); run_phase stack extra; run_phase stack test-config, in
# which extras.d/80-tempest.sh (configure_tempest) runs before the plugins.
STACK_SH = ("stack pre-install", "devstack_configure_cinder", "devstack_configure_nova",
            "stack install", "stack post-config", "devstack_start_nova_compute",
            "stack extra", "devstack_configure_tempest", "stack test-config")


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (scripts/install-deps.sh installs it)"
    files = [DEVSTACK / "plugin.sh", DEVSTACK / "settings", DEVSTACK / "lib" / "spdk-backend",
             HERE / "standins.sh"]
    proc = subprocess.run([shellcheck, "-x", "-s", "bash"] + [str(f) for f in files],
                          cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout.decode()


def test_debs_list_packages():
    packages = [line for line in (DEVSTACK / "files" / "debs" / "spdk-backend")
                .read_text().splitlines() if line and not line.startswith("#")]
    assert "liburing-dev" in packages and "qemu-system-x86" in packages


class Sandbox:
    def __init__(self, path, services, backends):
        self.path = path
        self.bin = path / "bin"
        self.run = path / "run"
        self.etc = path / "etc"
        self.data = path / "data"
        for d in (self.bin, self.etc, self.data):
            d.mkdir()
        agent = self.bin / "spdk-backend-agent"
        agent.write_text("#!/bin/sh\nexec %s -m spdk_backend.agent.main \"$@\"\n"
                         % sys.executable)
        agent.chmod(0o755)
        self.cinder_conf = self.etc / "cinder.conf"
        self.nova_conf = self.etc / "nova.conf"
        self.nova_cpu_conf = self.etc / "nova-cpu.conf"
        self.tempest_conf = self.etc / "tempest.conf"
        self.agent_conf = self.etc / "spdk-backend" / "agent.conf"
        self.socket = self.run / "agent.sock"
        self.env = {
            "SANDBOX": str(path), "SANDBOX_BIN": str(self.bin), "SANDBOX_TOOLS": str(HERE),
            "DEST": str(path / "opt"), "DATA_DIR": str(self.data), "STACK_USER": "root",
            "ENABLED_SERVICES": services, "CINDER_ENABLED_BACKENDS": backends,
            "CINDER_CONF": str(self.cinder_conf), "NOVA_CONF": str(self.nova_conf),
            "NOVA_CPU_CONF": str(self.nova_cpu_conf), "TEMPEST_CONFIG": str(self.tempest_conf),
            "SPDK_BACKEND_CONF_DIR": str(self.etc / "spdk-backend"),
            "SPDK_BACKEND_RUN_DIR": str(self.run),
            "SPDK_BACKEND_NO_PIN": "True",
            "PYTHONPATH": str(ROOT),
        }

    def stack(self):
        """Run stack.sh's part as devstack orders it (STACK_SH)."""
        return self.phases(*STACK_SH)

    def phases(self, *phases):
        """Run plugin.sh phases as devstack does: settings first, then each
        in one shell; a devstack_* name runs that stand-in of stack.sh's."""
        lines = ["set -eo pipefail", "source %s/standins.sh" % HERE,
                 "source %s/settings" % DEVSTACK]
        for phase in phases:
            if phase.startswith("devstack_"):
                lines.append(phase)
            else:
                lines.append("source %s/plugin.sh %s" % (DEVSTACK, phase))
        env = dict(os.environ, **self.env)
        proc = subprocess.run(["bash", "-c", "\n".join(lines)], env=env, cwd=str(self.path),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert proc.returncode == 0, proc.stdout.decode()
        return proc.stdout.decode()

    def calls(self):
        path = self.path / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def agent_pid(self):
        path = self.path / "spdk-backend-agent.pid"
        return int(path.read_text()) if path.exists() else None

    def kill_agent(self):
        pid = self.agent_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def sandbox_factory():
    made = []

    def make(services="cinder,c-vol,nova,n-cpu,tempest",
             backends="lvm:lvmdriver-1,spdk_vhost:spdk-1"):
        path = pathlib.Path(tempfile.mkdtemp(prefix="sb-ds-", dir="/tmp"))
        box = Sandbox(path, services, backends)
        made.append(box)
        return box

    yield make
    for box in made:
        box.kill_agent()
        shutil.rmtree(box.path, ignore_errors=True)


def _ini(path):
    # DEFAULT as an ordinary section: its keys must not leak into the others.
    parser = configparser.RawConfigParser(default_section="__no_default__")
    parser.optionxform = str
    parser.read(path)
    return parser


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.timeout(300)
def test_stack_unstack_clean(sandbox_factory):
    box = sandbox_factory()
    box.stack()
    box.phases("stack extra")  # a second run finds the flavor
    calls = box.calls()
    assert "enable_service spdk-backend-agent" in calls
    debs = [line for line in (DEVSTACK / "files/debs/spdk-backend").read_text().splitlines()
            if line and not line.startswith("#")]
    assert "install_package %s" % " ".join(debs) in calls
    assert "setup_develop %s" % box.env["DEST"] + "/spdk-backend" in calls
    assert "run_process spdk-backend-agent user=root group=" in calls
    assert "sudo sysctl -w vm.nr_hugepages=512" in calls
    creates = [c for c in calls if c.startswith("openstack flavor create")]
    assert creates == ["openstack flavor create m1.vhost --ram 512 --disk 1 --vcpus 1 "
                       "--property hw:mem_page_size=large"]

    # agent.conf, read with the agent's own option definitions.
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    conf(["--config-file", str(box.agent_conf)], project="sb-test")
    assert conf.agent.rpc_socket == str(box.socket)
    assert conf.agent.vhost_socket_dir == str(box.run / "vhost")
    assert conf.agent.state_dir == str(box.data / "spdk-backend" / "state")
    assert conf.agent.rpc_socket_mode == 0o660
    assert conf.agent.vhost_socket_group == "kvm"
    assert conf.agent.vhost_socket_mode == 0o660
    assert conf.agent.no_pin is True
    # Logging in oslo.log's [DEFAULT], not the deprecated [agent] options.
    written = _ini(box.agent_conf)
    assert dict(written["DEFAULT"]) == {"debug": "False"}
    assert "debug" not in written["agent"] and "log_file" not in written["agent"]
    # ... and the agent it configured is running and answering.
    with AgentClient(str(box.socket), timeout=10, connect_timeout=10) as client:
        assert client.call("spdk_get_version")["version"].startswith("spdk-backend")

    # cinder.conf: the spdk_vhost backend only, with options the driver knows.
    cinder = _ini(box.cinder_conf)
    assert cinder.sections() == ["spdk-1"]
    section = dict(cinder["spdk-1"])
    assert section["volume_driver"] == "spdk_backend.cinder.driver.SpdkVhostDriver"
    assert section["volume_backend_name"] == "spdk-1"
    known = {o.dest for o in cinder_conf.cinder_opts + volume_conf.volume_opts}
    assert set(section) - {"volume_driver", "volume_backend_name"} <= known
    opts = cfg.ConfigOpts()
    opts.register_opts(cinder_conf.cinder_opts + volume_conf.volume_opts, group="spdk-1")
    opts(["--config-file", str(box.cinder_conf)], project="sb-test")
    be = opts["spdk-1"]
    assert be.spdk_vhost_agent_socket == str(box.socket)
    assert be.spdk_vhost_volume_backend == "file"
    assert os.path.isdir(be.spdk_vhost_volume_dir)

    # nova-cpu.conf, the file nova-compute reads, as devstack made it
    # (copied from nova.conf after the post-config phase): the compute
    # driver and the agent's socket.
    nova = _ini(box.nova_cpu_conf)
    assert nova["DEFAULT"]["reimage_timeout_per_gb"] == "180"  # devstack's copy, then its own
    assert nova["DEFAULT"]["compute_driver"] == "spdk_backend.nova.driver.LibvirtDriver"
    assert set(nova["spdk_vhost"]) <= {o.dest for o in nova_conf.nova_opts}
    assert nova["spdk_vhost"]["agent_socket"] == str(box.socket)
    # nova.conf is edited only after stack.sh's background configure_neutron_nova
    # (which edits it too) is waited for.
    nova_edits = [i for i, c in enumerate(calls)
                  if c.startswith("iniset  %s " % box.nova_conf)]
    assert nova_edits and calls.index("async_wait configure_neutron_nova") < nova_edits[0]

    # tempest.conf: flavor_ref and flavor_ref_alt are the id of the
    # shared-memory flavor, replacing the ones devstack's configure_tempest set.
    flavor_id = (box.path / "flavor-m1.vhost").read_text().strip()
    tempest = _ini(box.tempest_conf)
    assert tempest["compute"]["flavor_ref"] == flavor_id
    assert tempest["compute"]["flavor_ref_alt"] == flavor_id

    pid = box.agent_pid()
    box.phases("unstack")
    assert not _alive(pid)
    box.phases("clean")
    assert not box.agent_conf.exists()
    assert not (box.data / "spdk-backend" / "volumes").exists()
    assert not (box.data / "spdk-backend" / "state").exists()


def test_without_cinder_backend_or_compute(sandbox_factory):
    box = sandbox_factory(services="cinder,c-vol,tempest", backends="lvm:lvmdriver-1")
    box.stack()
    assert not box.cinder_conf.exists()
    assert not box.nova_cpu_conf.exists()
    assert not [c for c in box.calls() if c.startswith("openstack")]
    # devstack's flavors stay tempest's.
    tempest = _ini(box.tempest_conf)
    assert (tempest["compute"]["flavor_ref"], tempest["compute"]["flavor_ref_alt"]) == ("42", "84")
    box.phases("unstack", "clean")


def test_compute_without_tempest(sandbox_factory):
    box = sandbox_factory(services="nova,n-cpu")
    box.stack()
    nova = _ini(box.nova_cpu_conf)
    assert nova["DEFAULT"]["compute_driver"] == "spdk_backend.nova.driver.LibvirtDriver"
    assert not box.tempest_conf.exists()
    assert "openstack flavor show m1.vhost -f value -c id" not in box.calls()
    box.phases("unstack", "clean")
