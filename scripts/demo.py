#!/usr/bin/env python3
"""The main job, after scripts/demo.sh installed everything: give a running VM
a fast volume with two commands, and show what the guest sees and does.

1. start spdk-backend-agent with a config generated in the demo directory
   (controller sockets open to group kvm, which libvirt's QEMU runs in);
2. define the small TCG test guest (busybox initramfs, private memory) in
   libvirtd, ``spdk-backend domain prepare`` it, start it;
3. ``spdk-backend volume create demo-vol --size 256M`` and
   ``spdk-backend attach demo-guest demo-vol --live``;
4. on the guest's serial console: the new disk, its size, a 16 MiB pattern
   written with dd and read back uncached, md5sums; on the host: the same
   bytes in the volume's sparse file, ``spdk-backend status``;
5. ``spdk-backend detach``, and everything is removed again (unless
   ``--keep``; ``--cleanup`` removes a kept demo later).

With ``--migrate`` the volume is created ``--shared`` and, before step 5,
the running guest migrates live to a second "host" on this machine: a
second libvirtd in its own mount namespace (tests/support/libvirt_pair.py)
and a second agent with its own sockets and state, both seeing the volume
directory as shared storage.  The steps are those of docs/cli.md "Live
migration" (``prepare-incoming`` there, ``virsh migrate``, ``detach
--after-migration`` here); the guest then reads its data back through the
second agent, and step 5 runs there.

Every operator command is printed as typed (``$ ...``) and really run.
"""

import argparse
import contextlib
import grp
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support import guest as guest_support          # noqa: E402
from tests.support import libvirt_domain as lvd            # noqa: E402
from tests.support import libvirt_pair                     # noqa: E402

DOMAIN = "demo-guest"
VOLUME = "demo-vol"
SIZE_MIB = 256
SIZE = "%dM" % SIZE_MIB
MARK = "spdk-backend demo guest"
URI = "qemu:///system"
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
PATTERN_MIB = 16
OFFSET_MIB = 8


class DemoError(Exception):
    pass


def say(text=""):
    print(text, flush=True)


def title(text):
    say("\n\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "\n== %s" % text)


def tail_lines(text, n):
    return "".join(text.splitlines(True)[-n:]) or "(empty)"


class AgentHost:
    """One "host": an agent with its config, sockets, state and log in
    ``dir``, and the environment that points spdk-backend at it and at the
    host's libvirtd."""

    def __init__(self, dir, volume_dir, libvirt_uri):
        self.dir = dir
        self.conf = os.path.join(dir, "agent.conf")
        self.pid_file = os.path.join(dir, "agent.pid")
        self.rpc_socket = os.path.join(dir, "agent.sock")
        self.log = os.path.join(dir, "agent.log")
        self.env = dict(os.environ, SPDK_BACKEND_RPC_SOCKET=self.rpc_socket,
                        SPDK_BACKEND_VOLUME_DIR=volume_dir,
                        SPDK_BACKEND_LIBVIRT_URI=libvirt_uri)
        bindir = os.path.dirname(sys.executable)
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        self.volume_dir = volume_dir
        self.proc = None

    def config(self):
        return ("[DEFAULT]\n"
                "log_file = %s\n"
                "[agent]\n"
                "core_mask = 0x1\n"
                "no_pin = true\n"
                "rpc_socket = %s\n"
                "vhost_socket_dir = %s/vhost\n"
                "%s"
                "allowed_backing_dirs = %s\n"
                "state_dir = %s/state\n" % (self.log, self.rpc_socket, self.dir,
                                            Demo.socket_access(), self.volume_dir, self.dir))

    def start(self):
        """Start the agent and wait until it answers."""
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)        # QEMU (libvirt-qemu) walks into vhost/
        with open(self.conf, "w") as f:
            f.write(self.config())
        say("$ cat %s" % self.conf)
        say(self.config().rstrip())
        say("$ spdk-backend-agent --config-file %s &" % self.conf)
        exe = shutil.which("spdk-backend-agent", path=self.env["PATH"])
        cmd = [exe] if exe else [sys.executable, "-m", "spdk_backend.agent.main"]
        self.proc = subprocess.Popen(cmd + ["--config-file", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=self.env,
                                     start_new_session=True)
        with open(self.pid_file, "w") as f:
            f.write("%d\n" % self.proc.pid)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise DemoError("the agent exited (%s); its log:\n%s"
                                % (self.proc.returncode, self.log_tail()))
            proc = subprocess.run([sys.executable, "-m", "spdk_backend.cmd.cli",
                                   "--timeout", "2", "rpc", "spdk_get_version"],
                                  env=self.env, capture_output=True, text=True, timeout=30)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise DemoError("the agent did not answer; its log:\n%s" % self.log_tail())
            time.sleep(0.2)

    def log_tail(self, n=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def pid(self):
        """The pid of the agent this demo started for this host, or None."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read()
        except OSError:
            return None
        # Only the agent this demo started (its config file is on the line).
        return pid if self.conf.encode() in cmdline else None

    def stop(self, loud):
        pid = self.pid()
        if pid is None:
            return
        if loud:
            say("$ kill %d   # spdk-backend-agent" % pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None:
                    return
            elif not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)


class Demo:
    def __init__(self, demo_dir, keep=False, migrate=False):
        self.dir = demo_dir
        self.keep = keep
        self.migrate = migrate
        self.volume_dir = os.path.join(demo_dir, "volumes")
        self.host_a = AgentHost(demo_dir, self.volume_dir, URI)
        self.host_b = AgentHost(os.path.join(demo_dir, "host-b"), self.volume_dir, None)
        self.rpc_socket = self.host_a.rpc_socket
        self.guest_dir = os.path.join(demo_dir, "guest")
        self.console = os.path.join(self.guest_dir, "console.sock")
        self.shell = None
        # Host B's libvirtd and whatever else is undone in reverse at cleanup.
        self.stack = contextlib.ExitStack()
        self.libvirtd_b = None
        self.on_b = False

    # -- running things -------------------------------------------------------

    def sh(self, cmd, check=True, quiet=False, timeout=120, host=None):
        """Run an operator command (printed as typed) on host A or ``host``;
        its stdout."""
        host = host or self.host_a
        if not quiet:
            say("%s$ %s" % ("[host B] " if host is self.host_b else "", cmd))
        proc = subprocess.run(cmd, shell=True, env=host.env, capture_output=True,
                              text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        if not quiet and out.strip():
            say(out.rstrip())
        if check and proc.returncode != 0:
            raise DemoError("%r failed with exit code %d" % (cmd, proc.returncode))
        return proc.stdout

    def guest(self, cmd, timeout=60, show=True):
        """Run a command in the guest's shell (printed as ``guest#``)."""
        if show:
            say("guest# %s" % cmd)
        out = self.shell.check(cmd, timeout=timeout).rstrip()
        if show and out:
            say(out)
        return out

    # -- steps --------------------------------------------------------------------

    @staticmethod
    def socket_access():
        """Who may connect to controller sockets: libvirt's QEMU runs as
        libvirt-qemu in group kvm on Debian; without that group, everyone."""
        try:
            grp.getgrnam("kvm")
        except KeyError:
            return "vhost_socket_mode = 0666\n"
        return "vhost_socket_group = kvm\nvhost_socket_mode = 0660\n"

    def start_agent(self):
        title("Start the agent (the polling engine + JSON-RPC)")
        self.host_a.start()
        say("$ export SPDK_BACKEND_RPC_SOCKET=%s SPDK_BACKEND_VOLUME_DIR=%s"
            % (self.rpc_socket, self.volume_dir))
        self.sh("spdk-backend rpc spdk_get_version")

    def define_guest(self):
        title("Define the test guest in libvirtd (TCG, 2 vCPUs, 256 MiB private memory)")
        os.makedirs(self.guest_dir, exist_ok=True)
        os.chmod(self.guest_dir, 0o755)
        image = guest_support.build_guest_image(cache_dir=os.path.join(self.guest_dir,
                                                                       "image"))
        os.chmod(os.path.join(self.guest_dir, "image"), 0o755)
        xml = lvd.domain_xml(DOMAIN, image.kernel, image.initrd, self.console,
                             memory_mib=256, vcpus=2)
        xml = xml.replace("<name>%s</name>" % DOMAIN,
                          "<name>%s</name>\n  <description>%s</description>"
                          % (DOMAIN, MARK), 1)
        path = os.path.join(self.guest_dir, "%s.xml" % DOMAIN)
        with open(path, "w") as f:
            f.write(xml)
        say("(kernel %s and a busybox initramfs; serial console on %s)"
            % (image.kernel, self.console))
        self.sh("virsh -c %s define %s" % (URI, path))

    def prepare_and_start(self):
        title("Prepare the domain for vhost-user disks, then start it")
        self.sh("spdk-backend domain prepare %s" % DOMAIN)
        self.sh("virsh -c %s start %s" % (URI, DOMAIN))
        self.shell = guest_support.SerialShell(self.console, connect_timeout=30)
        self.shell.wait_ready(120)
        say("(the guest's shell answers on its serial console)")
        self.guest("ls /sys/block | grep vd || echo 'no vd* disk yet'")

    def create_and_attach(self):
        title("Create a volume and attach it to the running guest")
        self.sh("spdk-backend volume create %s --size %s%s"
                % (VOLUME, SIZE, " --shared" if self.migrate else ""))
        self.sh("spdk-backend attach %s %s --live" % (DOMAIN, VOLUME))

    def guest_io(self):
        title("What the guest sees and does")
        self.guest("i=0; until [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] "
                   "&& exit 1; sleep 0.1; done; dmesg | grep -i 'virtio_blk.*vda'")
        self.guest("blockdev --getsize64 /dev/vda; ls /sys/block/vda/mq")
        self.guest("dd if=/dev/urandom of=/tmp/pattern bs=1M count=%d 2>/dev/null"
                   % PATTERN_MIB)
        self.guest("dd if=/tmp/pattern of=/dev/vda bs=1M seek=%d conv=fsync"
                   % OFFSET_MIB, timeout=180)
        written = self.guest("md5sum /tmp/pattern").split()[0]
        self.guest("echo 3 > /proc/sys/vm/drop_caches")
        read = self.guest("dd if=/dev/vda bs=1M skip=%d count=%d 2>/dev/null | md5sum"
                          % (OFFSET_MIB, PATTERN_MIB), timeout=180).split()[0]

        title("The same bytes on the host, in the volume's sparse file")
        path = os.path.join(self.volume_dir, VOLUME)
        on_host = self.sh("dd if=%s bs=1M skip=%d count=%d status=none | md5sum"
                          % (path, OFFSET_MIB, PATTERN_MIB)).split()[0]
        self.sh("du -h --apparent-size %s; du -h %s" % (path, path))
        with open(path, "rb") as f:
            f.seek(OFFSET_MIB << 20)
            direct = hashlib.md5(f.read(PATTERN_MIB << 20)).hexdigest()
        if not written == read == on_host == direct:
            raise DemoError("data mismatch: guest wrote %s, read back %s, host file has %s"
                            % (written, read, on_host))
        self.checksum = written

        title("The agent's view")
        self.sh("spdk-backend volume list")
        self.sh("spdk-backend domain disks %s" % DOMAIN)
        say("(the guest reads the whole disk in the background: 4 KiB direct reads)")
        # A harness job, not a bare '&': the guest's shell is its PID 1 and
        # exits (the guest panics) when a background job ends while it
        # waits for a command line (tests/support/guest.py, job_start).
        read_all = "dd if=/dev/vda of=/dev/null bs=4k count=%d iflag=direct" % (SIZE_MIB * 256)
        say("guest# %s &" % read_all)
        self.shell.job_start("read-all", read_all)
        self.sh("spdk-backend status --interval 2")
        self.shell.job_wait("read-all", timeout=120)
        xml = self.sh("virsh -c %s dumpxml %s" % (URI, DOMAIN), quiet=True)
        m = re.search(r"( *<disk type='vhostuser'.*?</disk>)", xml, re.S)
        if m:
            say("$ virsh dumpxml %s   # the disk spdk-backend attached" % DOMAIN)
            say(m.group(1))

    def migrate_live(self):
        title("Live migration to host B: a second libvirtd and agent on this machine")
        say("(host B's libvirtd runs in its own mount namespace with its own /etc, /run "
            "and /var/lib/libvirt, as tests/support/libvirt_pair.py starts it; both "
            "hosts see %s: the shared storage)" % self.volume_dir)
        self.libvirtd_b = self.stack.enter_context(libvirt_pair.second_libvirtd())
        uri_b = self.libvirtd_b.uri
        self.host_b.env["SPDK_BACKEND_LIBVIRT_URI"] = uri_b
        say("(host B's libvirt: %s)" % uri_b)
        self.host_b.start()
        xml = os.path.join(self.dir, "%s.migrate.xml" % DOMAIN)
        console_b = os.path.join(self.guest_dir, "console-b.sock")
        self.sh("virsh -c %s dumpxml --migratable %s > %s" % (URI, DOMAIN, xml))
        self.sh("spdk-backend prepare-incoming %s %s --xml %s --output %s"
                % (DOMAIN, VOLUME, xml, xml), host=self.host_b)
        # Two hosts would keep the same console path; these two share a
        # file system, so B's QEMU listens on another one.
        self.sh("sed -i 's|%s|%s|' %s   # the demo's hosts share one file system"
                % (self.console, console_b, xml))
        self.shell.close()
        self.shell = None
        self.sh("virsh -c %s migrate --live --persistent --undefinesource --xml %s %s "
                "'%s' --migrateuri tcp://127.0.0.1" % (URI, xml, DOMAIN, uri_b),
                timeout=300)
        self.on_b = True
        self.sh("virsh -c '%s' list" % uri_b, host=self.host_b)
        self.sh("spdk-backend detach %s %s --after-migration" % (DOMAIN, VOLUME))

        title("On host B: the guest reads its data back through B's agent")
        self.shell = guest_support.SerialShell(console_b, connect_timeout=30)
        self.guest("echo 3 > /proc/sys/vm/drop_caches")
        read = self.guest("dd if=/dev/vda bs=1M skip=%d count=%d iflag=direct 2>/dev/null "
                          "| md5sum" % (OFFSET_MIB, PATTERN_MIB), timeout=180).split()[0]
        if read != self.checksum:
            raise DemoError("after the migration the guest read %s, it wrote %s"
                            % (read, self.checksum))
        self.sh("spdk-backend domain disks %s" % DOMAIN, host=self.host_b)

    def detach(self):
        title("Detach: the disk leaves the guest, the controller the agent")
        self.sh("spdk-backend detach %s %s" % (DOMAIN, VOLUME),
                host=self.host_b if self.on_b else None)
        self.guest("i=0; while [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] "
                   "&& exit 1; sleep 0.1; done; ls /sys/block | grep vd || "
                   "echo 'no vd* disk any more'")

    def qemu_logs(self):
        """(host, QEMU's log of the guest) on host A and, once it runs, host B."""
        logs = []
        try:
            with open(os.path.join(QEMU_LOG_DIR, "%s.log" % DOMAIN), errors="replace") as f:
                logs.append(("host A's", f.read()))
        except OSError:
            pass
        if self.libvirtd_b is not None:
            logs.append(("host B's", self.libvirtd_b.qemu_log(DOMAIN)))
        return logs

    # -- cleanup ------------------------------------------------------------------

    def cleanup(self, loud=True):
        """Remove everything the demo made; never raises."""
        if loud:
            title("Clean up")
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        if self.libvirtd_b is not None and loud:
            say("(host B: its libvirtd destroys the guest and stops)")
        try:
            self.stack.close()
        except Exception as exc:   # keep going: the rest must go too
            say("(host B's libvirtd: %s)" % exc)
        self.host_b.stop(loud)
        steps = []
        if self.host_a.pid() is not None:
            for vol in self._volumes():
                if vol["name"] != VOLUME:
                    continue
                if vol["controllers"]:
                    steps.append("spdk-backend detach %s %s" % (DOMAIN, VOLUME))
                steps.append("spdk-backend volume delete %s" % VOLUME)
        if self._our_domain():
            steps += ["virsh -c %s destroy %s" % (URI, DOMAIN),
                      "virsh -c %s undefine %s" % (URI, DOMAIN)]
        for cmd in steps:
            try:
                self.sh(cmd, check=False, quiet=not loud)
            except Exception as exc:   # keep going: the rest must go too
                say("(%s: %s)" % (cmd, exc))
        self.host_a.stop(loud)
        shutil.rmtree(self.dir, ignore_errors=True)
        if loud:
            say("(removed %s)" % self.dir)

    def _volumes(self):
        try:
            out = self.sh("spdk-backend --timeout 10 --json volume list", quiet=True,
                          check=False)
            return json.loads(out)
        except (ValueError, subprocess.TimeoutExpired):
            return []

    def _our_domain(self):
        proc = subprocess.run(["virsh", "-c", URI, "desc", DOMAIN], capture_output=True,
                              text=True, timeout=30)
        return proc.returncode == 0 and MARK in proc.stdout

    def check_clean_slate(self):
        """Refuse to touch a domain named like ours that is not ours; remove
        what an interrupted earlier demo left."""
        proc = subprocess.run(["virsh", "-c", URI, "dominfo", DOMAIN], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode == 0 and not self._our_domain():
            raise DemoError("a domain named %s exists and was not made by this demo; "
                            "remove or rename it first" % DOMAIN)
        if (self.host_a.pid() is not None or self.host_b.pid() is not None
                or self._our_domain() or os.path.exists(self.dir)):
            say("(removing what an earlier demo run left behind)")
            self.cleanup(loud=False)

    def keep_message(self):
        title("Kept running (--keep)")
        say("The agent, the guest %s and volume %s are still there. Try:" % (DOMAIN, VOLUME))
        say("  export SPDK_BACKEND_RPC_SOCKET=%s SPDK_BACKEND_VOLUME_DIR=%s"
            % (self.rpc_socket, self.volume_dir))
        say("  spdk-backend status; spdk-backend volume list; "
            "spdk-backend attach %s %s --live" % (DOMAIN, VOLUME))
        say("Remove it all with: scripts/demo.sh --cleanup")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave the agent, guest and volume running at the end")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove what an earlier --keep run left")
    parser.add_argument("--dir", default=os.environ.get("SB_DEMO_DIR",
                                                         "/var/lib/spdk-backend-demo"),
                        help="demo directory (default: %(default)s)")
    parser.add_argument("--migrate", action="store_true",
                        help="also migrate the guest live to a second libvirtd and agent "
                             "on this machine (docs/cli.md, Live migration)")
    args = parser.parse_args(argv)
    if args.migrate and args.keep:
        parser.error("--migrate cannot be kept: host B lives only as long as the demo")
    if os.geteuid() != 0:
        print("demo: run as root (it starts the agent and defines a libvirt domain)",
              file=sys.stderr)
        return 2
    demo = Demo(os.path.abspath(args.dir), keep=args.keep, migrate=args.migrate)
    if args.cleanup:
        demo.cleanup()
        return 0
    ok = False
    started = time.monotonic()
    try:
        demo.check_clean_slate()
        demo.start_agent()
        demo.define_guest()
        demo.prepare_and_start()
        demo.create_and_attach()
        demo.guest_io()
        if args.migrate:
            demo.migrate_live()
        if not args.keep:
            demo.detach()
        ok = True
    except (DemoError, guest_support.GuestError, subprocess.TimeoutExpired) as exc:
        print("\ndemo FAILED: %s" % exc, file=sys.stderr)
        # What QEMU said last on each host (a crash or a refused migration).
        for name, text in demo.qemu_logs():
            print("%s QEMU log tail:\n%s" % (name, tail_lines(text, 12)), file=sys.stderr)
        for name, host in (("agent", demo.host_a), ("host B's agent", demo.host_b)):
            if host.proc is not None:
                print("%s log tail:\n%s" % (name, host.log_tail()), file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
    finally:
        if ok and args.keep:
            if demo.shell is not None:
                demo.shell.close()
            demo.keep_message()
        else:
            demo.cleanup()
    if ok:
        title("Demo OK in %.0f s: the guest wrote %d MiB through its vhost-user disk "
              "(md5 %s), read it back, and the host found the same bytes%s"
              % (time.monotonic() - started, PATTERN_MIB, demo.checksum,
                 "; it migrated live to host B and read them there" if args.migrate
                 else ""))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
