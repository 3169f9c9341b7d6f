"""``spdk-backend domain prepare|disks``: libvirt domains and their disks."""

from spdk_backend.cmd import _common
from spdk_backend.cmd import cli
from spdk_backend.virt.libvirt import policy


def _prepare(args):
    host = _common.open_host(args)
    try:
        result = policy.prepare_domain(host, args.domain, hugepages=args.hugepages)
    finally:
        host.close()
    if args.json:
        cli.print_json(result._asdict())
        return
    if result.changed:
        print("Domain %s is ready for vhost-user disks (guest memory: %s, shared):"
              % (args.domain, result.memory))
        for line in result.changes:
            print("  - %s" % line)
    else:
        print("Domain %s was already ready for vhost-user disks (guest memory: %s, "
              "shared)." % (args.domain, result.memory))
    if result.restart_required:
        print("The running guest still has private memory: stop and start it "
              "(virsh destroy %s; virsh start %s) before a live attach; a reboot from "
              "inside the guest is not enough." % (args.domain, args.domain))


def _disks(args):
    host = _common.open_host(args)
    try:
        disks = policy.list_vhost_disks(host, args.domain)
    finally:
        host.close()
    if args.json:
        cli.print_json([d._asdict() for d in disks])
        return
    if not disks:
        print("Domain %s has no vhost-user disks." % args.domain)
        return
    cli.print_table(["TARGET", "ALIAS", "QUEUES", "LIVE", "CONFIG", "SOCKET"],
                    [[d.target_dev, d.alias, d.queues, "yes" if d.live else "no",
                      "yes" if d.config else "no", d.socket_path] for d in disks])


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "domain", help="prepare libvirt domains for vhost-user disks",
        description="libvirt domains (virsh-managed VMs).",
        examples=["spdk-backend domain prepare vm1",
                  "spdk-backend domain disks vm1"])
    _common.add_common_options(p)
    sub = p.add_subparsers(dest="domain_command", metavar="ACTION")
    sub.required = True

    pr = _common.add_command(
        sub, "prepare", help="make a domain's guest memory shared",
        examples=["spdk-backend domain prepare vm1   # then restart vm1 if it runs",
                  "spdk-backend domain prepare vm1 --memfd"],
        description="Make the persistent definition of DOMAIN able to take vhost-user "
                    "disks: shared guest memory (hugepages when the host has free ones, "
                    "memfd otherwise) and shared NUMA cells.  Idempotent; nothing else "
                    "changes.  A running guest needs a stop and start to pick it up.")
    pr.add_argument("domain", metavar="DOMAIN")
    mem = pr.add_mutually_exclusive_group()
    mem.add_argument("--hugepages", dest="hugepages", action="store_true", default=None,
                     help="require hugepages")
    mem.add_argument("--memfd", dest="hugepages", action="store_false",
                     help="use memfd even when hugepages are free")
    _common.add_common_options(pr, libvirt=True)
    pr.set_defaults(func=_prepare)

    d = _common.add_command(
        sub, "disks", help="list a domain's vhost-user disks",
        description="The vhost-user disks of DOMAIN, in the running domain and in its "
                    "definition.",
        examples=["spdk-backend domain disks vm1 --json"])
    d.add_argument("domain", metavar="DOMAIN")
    _common.add_common_options(d, libvirt=True)
    d.set_defaults(func=_disks)
