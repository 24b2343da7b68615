"""Where the nodes live: one network namespace per node, joined by a bridge, or loopback addresses.

As root (and where the kernel allows network namespaces), every node gets its own namespace ``<prefix>n<id>``
with the address ``198.18.0.<10 + id>/16`` (198.18.0.0/15 is reserved for benchmarking, RFC 2544) on a veth
whose other end sits on a bridge in a "switch" namespace ``<prefix>s``. The clients (and the controller's own
sockets) live in ``<prefix>c`` at ``198.18.0.100``. Only iproute2 is used, and every command names its
namespace (``ip -n``): nothing is created in, or changed in, the root network namespace. No namespace has a
default route, so an address that is not on the bridge is unreachable rather than routed to the host.

Partitions are blackhole routes (``ip -n NS route add blackhole ADDR/32``) inside the node namespaces: a
node with such a route for a peer sends it nothing. Both directions: a route on each side. One way: only on
the sending side; over TCP that is a partial cut (the receiver's acknowledgements are dropped, so the
sender's connection stalls after a window of data), as with packet filters. The clients' namespace is never
cut off: a partition is between nodes.

Without root or namespaces, the nodes get the loopback addresses ``127.0.0.<10 + id>`` (one host) and the run
says so; partitions are then not possible.
"""
import ctypes
import os
import subprocess

BASE = "198.18.0."
CLIENT_ADDRESS = BASE + "100"
CLONE_NEWNET = 0x40000000


def _ip(*args, check=True):
    result = subprocess.run(("ip",) + args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise OSError("ip %s: %s" % (" ".join(args), result.stderr.strip() or "exit %d" % result.returncode))
    return result


def namespaces_possible():
    """None if this process can build namespaces, else why not (one line)."""
    if os.geteuid() != 0:
        return "not root"
    if not os.path.exists("/usr/sbin/ip") and not os.path.exists("/sbin/ip") and not os.path.exists("/bin/ip"):
        return "iproute2 (ip) is not installed"
    name = "pxprobe%d" % os.getpid()
    result = _ip("netns", "add", name, check=False)
    if result.returncode != 0:
        return "ip netns add failed: %s" % result.stderr.strip()
    _ip("netns", "del", name, check=False)
    return None


class Topology:
    """The nodes' addresses and, in namespace mode, the namespaces. ``mode`` is "netns" or "loopback"."""

    def __init__(self, node_ids, use_netns=True):
        self.node_ids = list(node_ids)
        self.prefix = "px%d" % os.getpid()
        self.mode = "loopback"
        self.fallback_reason = None
        self.created = []             # namespaces made so far (torn down in reverse)
        self.cuts = set()             # (from node, to node) blackhole routes in place
        if use_netns:
            self.fallback_reason = namespaces_possible()
            if self.fallback_reason is None:
                self.mode = "netns"
        else:
            self.fallback_reason = "namespaces not asked for"

    # ------------------------------------------------------------------ names and addresses
    def ns(self, node_id):
        return "%sn%d" % (self.prefix, node_id)

    @property
    def switch_ns(self):
        return self.prefix + "s"

    @property
    def client_ns(self):
        return self.prefix + "c" if self.mode == "netns" else None

    def address(self, node_id):
        return (BASE if self.mode == "netns" else "127.0.0.") + str(10 + node_id)

    def exec_prefix(self, node_id):
        """The command prefix that runs a program in the node's network namespace ([] on loopback).

        nsenter enters the network namespace only. Not ``ip netns exec``: it also gives the program a mount
        namespace of its own, a copy of the mounts at that moment, and a copy holding another node's XFS keeps
        that filesystem's superblock alive: after a power cut the node's "remount" would get the very
        filesystem that was shut down."""
        return ["nsenter", "--net=/run/netns/" + self.ns(node_id), "--"] if self.mode == "netns" else []

    # ------------------------------------------------------------------ build and tear down
    def setup(self):
        if self.mode != "netns":
            return
        sw = self.switch_ns
        self._add_ns(sw)
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        members = [(self.ns(n), "v%d" % n, self.address(n)) for n in self.node_ids]
        members.append((self.client_ns, "vc", CLIENT_ADDRESS))
        for ns, port, address in members:
            self._add_ns(ns)
            # The veth is created inside the switch namespace with its peer end put straight into the node's.
            _ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", port, "master", "br0")
            _ip("-n", sw, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", address + "/16", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _add_ns(self, name):
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def teardown(self):
        """Delete every namespace made (call after every process in them is gone)."""
        for name in reversed(self.created):
            _ip("netns", "del", name, check=False)
        self.created = []

    def enter_client_ns(self):
        """Move this process's calling thread (call it from the main thread before any socket or thread
        exists: both inherit it) into the clients' namespace. Python 3.11 has no os.setns: libc's."""
        if self.mode != "netns":
            return
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/" + self.client_ns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into %s failed" % self.client_ns)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ partitions
    @property
    def can_partition(self):
        return self.mode == "netns"

    def cut(self, src, dst):
        """From now on node ``src`` sends nothing to node ``dst``."""
        if (src, dst) in self.cuts:
            return
        _ip("-n", self.ns(src), "route", "add", "blackhole", self.address(dst) + "/32")
        self.cuts.add((src, dst))

    def cut_between(self, side_a, side_b, one_way=False):
        for a in side_a:
            for b in side_b:
                self.cut(a, b)
                if not one_way:
                    self.cut(b, a)

    def heal(self):
        for src, dst in sorted(self.cuts):
            _ip("-n", self.ns(src), "route", "del", "blackhole", self.address(dst) + "/32", check=False)
        self.cuts.clear()
