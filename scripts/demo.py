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

Every operator command is printed as typed (``$ ...``) and really run.
"""

import argparse
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

DOMAIN = "demo-guest"
VOLUME = "demo-vol"
SIZE = "256M"
MARK = "spdk-backend demo guest"
URI = "qemu:///system"
PATTERN_MIB = 16
OFFSET_MIB = 8


class DemoError(Exception):
    pass


def say(text=""):
    print(text, flush=True)


def title(text):
    say("\n\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "\n== %s" % text)


class Demo:
    def __init__(self, demo_dir, keep=False):
        self.dir = demo_dir
        self.keep = keep
        self.conf = os.path.join(demo_dir, "agent.conf")
        self.pid_file = os.path.join(demo_dir, "agent.pid")
        self.rpc_socket = os.path.join(demo_dir, "agent.sock")
        self.volume_dir = os.path.join(demo_dir, "volumes")
        self.log = os.path.join(demo_dir, "agent.log")
        self.guest_dir = os.path.join(demo_dir, "guest")
        self.console = os.path.join(self.guest_dir, "console.sock")
        self.env = dict(os.environ, SPDK_BACKEND_RPC_SOCKET=self.rpc_socket,
                        SPDK_BACKEND_VOLUME_DIR=self.volume_dir,
                        SPDK_BACKEND_LIBVIRT_URI=URI)
        bindir = os.path.dirname(sys.executable)
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        self.agent = None
        self.shell = None

    # -- running things -------------------------------------------------------

    def sh(self, cmd, check=True, quiet=False, timeout=120):
        """Run an operator command (printed as typed); its stdout."""
        if not quiet:
            say("$ %s" % cmd)
        proc = subprocess.run(cmd, shell=True, env=self.env, capture_output=True,
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
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)        # QEMU (libvirt-qemu) walks into vhost/
        with open(self.conf, "w") as f:
            f.write("[agent]\n"
                    "core_mask = 0x1\n"
                    "no_pin = true\n"
                    "rpc_socket = %s\n"
                    "vhost_socket_dir = %s/vhost\n"
                    "%s"
                    "allowed_backing_dirs = %s\n"
                    "state_dir = %s/state\n"
                    "log_file = %s\n" % (self.rpc_socket, self.dir, self.socket_access(),
                                         self.volume_dir, self.dir, self.log))
        say("$ cat %s" % self.conf)
        with open(self.conf) as f:
            say(f.read().rstrip())
        say("$ spdk-backend-agent --config-file %s &" % self.conf)
        exe = shutil.which("spdk-backend-agent", path=self.env["PATH"])
        cmd = [exe] if exe else [sys.executable, "-m", "spdk_backend.agent.main"]
        self.agent = subprocess.Popen(cmd + ["--config-file", self.conf],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=self.env,
                                      start_new_session=True)
        with open(self.pid_file, "w") as f:
            f.write("%d\n" % self.agent.pid)
        deadline = time.monotonic() + 60
        while True:
            if self.agent.poll() is not None:
                raise DemoError("the agent exited (%s); its log:\n%s"
                                % (self.agent.returncode, self._log_tail()))
            proc = subprocess.run([sys.executable, "-m", "spdk_backend.cmd.cli",
                                   "--timeout", "2", "rpc", "spdk_get_version"],
                                  env=self.env, capture_output=True, text=True, timeout=30)
            if proc.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise DemoError("the agent did not answer; its log:\n%s" % self._log_tail())
            time.sleep(0.2)
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
        self.sh("spdk-backend volume create %s --size %s" % (VOLUME, SIZE))
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
        say("(the guest reads the disk in the background for a few seconds: "
            "4 KiB direct reads)")
        self.guest("timeout 4 dd if=/dev/vda of=/dev/null bs=4k iflag=direct "
                   ">/dev/null 2>&1 &")
        self.sh("spdk-backend status --interval 2")
        self.guest("wait", show=False, timeout=30)
        xml = self.sh("virsh -c %s dumpxml %s" % (URI, DOMAIN), quiet=True)
        m = re.search(r"( *<disk type='vhostuser'.*?</disk>)", xml, re.S)
        if m:
            say("$ virsh dumpxml %s   # the disk spdk-backend attached" % DOMAIN)
            say(m.group(1))

    def detach(self):
        title("Detach: the disk leaves the guest, the controller the agent")
        self.sh("spdk-backend detach %s %s" % (DOMAIN, VOLUME))
        self.guest("i=0; while [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] "
                   "&& exit 1; sleep 0.1; done; ls /sys/block | grep vd || "
                   "echo 'no vd* disk any more'")

    # -- cleanup ------------------------------------------------------------------

    def _log_tail(self, n=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def cleanup(self, loud=True):
        """Remove everything the demo made; never raises."""
        if loud:
            title("Clean up")
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        steps = []
        if self._agent_alive():
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
        self._stop_agent(loud)
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

    def _agent_pid(self):
        if self.agent is not None:
            return self.agent.pid if self.agent.poll() is None else None
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

    def _agent_alive(self):
        return self._agent_pid() is not None

    def _stop_agent(self, loud):
        pid = self._agent_pid()
        if pid is None:
            return
        if loud:
            say("$ kill %d   # spdk-backend-agent" % pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.agent is not None:
                if self.agent.poll() is not None:
                    return
            elif not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        if self.agent is not None:
            self.agent.wait(10)

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
        if self._agent_alive() or self._our_domain() or os.path.exists(self.dir):
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
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: run as root (it starts the agent and defines a libvirt domain)",
              file=sys.stderr)
        return 2
    demo = Demo(os.path.abspath(args.dir), keep=args.keep)
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
        if not args.keep:
            demo.detach()
        ok = True
    except (DemoError, guest_support.GuestError, subprocess.TimeoutExpired) as exc:
        print("\ndemo FAILED: %s" % exc, file=sys.stderr)
        if demo.agent is not None:
            print("agent log tail:\n%s" % demo._log_tail(), file=sys.stderr)
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
              "(md5 %s), read it back, and the host found the same bytes"
              % (time.monotonic() - started, PATTERN_MIB, demo.checksum))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
