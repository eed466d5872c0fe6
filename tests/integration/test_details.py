"""`"details": "loopback"`: /status and ?verbose reveal internal URLs and errors, so they
can be limited to clients on this host. A client from another host is simulated with a
network namespace and a veth pair (both made by this test, removed afterwards): its
address 10.213.x.2 is not loopback, the daemon's side is 10.213.x.1."""
import os
import subprocess

import harness
from harness import curl, eq, start_daemon


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class RemoteClient:
    """A network namespace acting as another host; curl runs inside it."""

    def __init__(self):
        n = os.getpid() % 250 + 1
        self.ns = "probedt%d" % os.getpid()
        self.veth = "pdt%d" % (os.getpid() % 100000)
        self.host_ip = "10.213.%d.1" % n
        self.peer_ip = "10.213.%d.2" % n
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.veth + "p")
            sh("ip", "link", "set", self.veth + "p", "netns", self.ns)
            sh("ip", "addr", "add", self.host_ip + "/30", "dev", self.veth)
            sh("ip", "link", "set", self.veth, "up")
            sh("ip", "-n", self.ns, "addr", "add", self.peer_ip + "/30", "dev", self.veth + "p")
            sh("ip", "-n", self.ns, "link", "set", self.veth + "p", "up")
        except Exception:
            self.close()
            raise

    def curl(self, port, path):
        out = subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-s", "--noproxy", "*", "-m", "5",
                              "-o", "-", "-w", "\n%{http_code}", "http://%s:%d%s" % (self.host_ip, port, path)],
                             capture_output=True, text=True, timeout=20 * harness.SCALE)
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body

    def close(self):
        subprocess.run(["ip", "link", "del", self.veth], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


def run_with(details):
    cfg = {"probes": [{"name": "app", "type": "tcp", "address": "127.0.0.1:1"}]}
    if details:
        cfg["details"] = details
    d = start_daemon(cfg, listen="0.0.0.0:0")
    remote = RemoteClient()
    try:
        return d, remote, remote.curl(d.port, "/status"), remote.curl(d.port, "/livez?verbose")
    finally:
        remote.close()


def test_loopback_details_hidden_from_other_hosts():
    d, _, status, verbose = run_with("loopback")
    eq(status[0], 403, "/status from another host")
    assert "loopback" in status[1], status
    eq(verbose, (200, "ok\n"), "?verbose from another host is the plain answer")
    code, body, _ = curl(d.url("/status"))
    eq(code, 200, "/status from loopback")
    assert '"probes"' in body
    code, body, _ = curl(d.url("/livez?verbose"))
    assert "[-]app " in body and "livez check" in body, body


def test_details_all_by_default():
    _, _, status, verbose = run_with(None)
    eq(status[0], 200, "/status from another host by default")
    assert "[-]app " in verbose[1] and "livez check" in verbose[1], verbose


def test_details_value_checked():
    r = harness.run_probed(["--check-config", "-c", "/dev/stdin"], input='{"details": "lan"}')
    eq(r.rc, 2, "exit code")
    assert 'config: details: "lan" is not "all" or "loopback"' in r.stderr, r.stderr


if __name__ == "__main__":
    harness.main()
