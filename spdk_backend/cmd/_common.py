"""What the volume, domain and attach commands share.

Sizes (``10G``), the options every command also takes after its name
(``--json``, ``--rpc-socket``, ``--libvirt-uri``), the sub-parser of a
command with its help's example (:func:`add_command`), finding a volume among
the agent's bdevs, and the deterministic name of the vhost controller that
serves a volume to a domain.

A volume is an agent bdev of the same name; the agent records it in its
state file, so the volume list is the agent's bdev list: a ``uring`` bdev is
a ``file`` volume (its backing file is the bdev's ``filename``), a
``malloc`` bdev a ``malloc`` volume.
"""

import argparse
import collections
import hashlib
import os
import re

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.virt.libvirt import host as libvirt_host

ENV_LIBVIRT_URI = "SPDK_BACKEND_LIBVIRT_URI"
ENV_VOLUME_DIR = "SPDK_BACKEND_VOLUME_DIR"
DEFAULT_VOLUME_DIR = "/var/lib/spdk-backend/volumes"

# bdev module -> volume backend (the stevedore name).
MODULE_BACKENDS = {"uring": "file", "malloc": "malloc"}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# Characters a controller name (a socket file name) may hold.
_CTRLR_BAD = re.compile(r"[^A-Za-z0-9_:-]")
_PART_MAX = 32


class VolumeNotFound(exception.InvalidInput):
    msg_fmt = ("no such volume %(name)s (spdk-backend volume list shows the volumes "
               "the agent serves)")


def parse_size(text, block_size=512):
    """Bytes for ``text``: a number with an optional K, M, G, T or P suffix
    (powers of 1024; ``10G``, ``10GiB`` and ``10gb`` are the same), a
    positive multiple of ``block_size``."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise exception.InvalidInput(
            reason="%r is not a size: use a number of bytes with an optional K, M, G "
                   "or T suffix (powers of 1024), such as 256M or 10G" % (text,))
    size = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if size != int(size):
        raise exception.InvalidInput(reason="size %r is not a whole number of bytes" % text)
    size = int(size)
    if size <= 0:
        raise exception.InvalidInput(reason="size %r must be more than zero" % text)
    if size % block_size:
        raise exception.InvalidInput(
            reason="size %r (%d bytes) is not a multiple of the %d-byte block size"
                   % (text, size, block_size))
    return size


def size_arg(text):
    """argparse type for ``--size``: the error text reaches the user as is."""
    try:
        return parse_size(text)
    except exception.InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.kwargs.get("reason", str(exc)))


def format_size(size):
    """``268435456`` -> ``256M``; exact when it can be, one decimal otherwise."""
    for unit in ("P", "T", "G", "M", "K"):
        mult = _UNITS[unit]
        if size >= mult:
            if size % mult == 0:
                return "%d%s" % (size // mult, unit)
            return "%.1f%s" % (size / float(mult), unit)
    return "%dB" % size


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual; keeps text with line breaks (the
    ``example:`` epilog) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line if line.strip() else line
                           for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def example_epilog(*lines):
    """The ``example:`` section of a command's help: command lines, each
    optionally followed by ``  # what it does`` (a line ending in `` \\``
    goes on in the next one)."""
    return "example:\n" + "\n".join("  " + line for line in lines)


def add_command(subparsers, name, help, description, examples):
    """A command's sub-parser, its help ending with ``examples`` (command
    lines, see :func:`example_epilog`)."""
    return subparsers.add_parser(name, help=help, description=description,
                                 epilog=example_epilog(*examples),
                                 formatter_class=HelpFormatter)


def add_common_options(parser, libvirt=False):
    """Options also accepted after the command name (``volume list --json``).

    Their defaults are suppressed so the ones given before the command
    (handled by the main parser) are not overwritten.
    """
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
    parser.add_argument("--rpc-socket", metavar="PATH", default=argparse.SUPPRESS,
                        help="the agent's JSON-RPC socket")
    if libvirt:
        parser.add_argument(
            "--libvirt-uri", metavar="URI",
            default=os.environ.get(ENV_LIBVIRT_URI, libvirt_host.DEFAULT_URI),
            help="libvirt connection URI (default: $%s or %%(default)s)" % ENV_LIBVIRT_URI)


def open_host(args):
    return libvirt_host.Host(args.libvirt_uri, events=True)


def ctrlr_name(domain, volume):
    """The vhost controller serving ``volume`` to ``domain``.

    Deterministic (attach and detach find the same one), unique per pair (a
    hash of both names, so names that sanitize alike do not collide), made
    of the characters a controller name allows, and short enough for a
    unix socket path: ``<domain>.<volume>.<hash8>``.
    """
    def part(name):
        text = _CTRLR_BAD.sub("_", name)[:_PART_MAX]
        return text if text and text[0] != "-" else "_" + text[:_PART_MAX - 1]

    digest = hashlib.sha1(("%s\0%s" % (domain, volume)).encode("utf-8")).hexdigest()[:8]
    return "%s.%s.%s" % (part(domain), part(volume), digest)


Volume = collections.namedtuple("Volume", "name backend size path bdev")


def volume_from_bdev(bdev):
    """A :class:`Volume` for an agent bdev, or None if it is no volume."""
    backend = MODULE_BACKENDS.get(bdev.get("module"))
    if backend is None:
        return None
    path = (bdev.get("driver_specific") or {}).get("uring", {}).get("filename")
    return Volume(name=bdev["name"], backend=backend,
                  size=bdev["block_size"] * bdev["num_blocks"], path=path, bdev=bdev)


def list_volumes(client):
    vols = [volume_from_bdev(b) for b in client.call("bdev_get_bdevs") or ()]
    return sorted((v for v in vols if v is not None), key=lambda v: v.name)


def get_volume(client, name):
    """The volume ``name``; :class:`VolumeNotFound` if the agent has none."""
    # A name the agent refuses is one it could never hold: no such volume.
    bdev = connector.get_bdev(client, name, invalid_is_missing=True)
    if bdev is None:
        raise VolumeNotFound(name=name)
    vol = volume_from_bdev(bdev)
    if vol is None:
        raise exception.InvalidInput(
            reason="bdev %s is a %s bdev, not a volume (file or malloc)"
                   % (name, bdev.get("module")))
    return vol


controllers = connector.controllers
controller_bdev = connector.controller_bdev
users_of = connector.controllers_of


def refuse_in_use(client, volume):
    connector.refuse_in_use(
        client, volume, reason="it is attached through controller(s) %(users)s; detach "
                               "it first (spdk-backend detach DOMAIN %(bdev)s)")
