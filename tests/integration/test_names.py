"""Names resolved when probed connects (README "Names"): a real dnsmasq on loopback,
started by each test with its own hosts file, and probed pointed at it with the config's
`resolver`. Names under probed.test are dnsmasq's alone (unknown ones are NXDOMAIN).
"""
import os
import signal
import socket
import subprocess
import time

import harness
from harness import config, eq, http, probe, start_daemon, start_target, tcp, wait_probe, wait_until

DOMAIN = "probed.test"


class Dnsmasq:
    """dnsmasq on 127.0.0.1:<port> serving `hosts` (lines "ADDR NAME") with this TTL,
    logging every query to a file; .set(hosts) rewrites the file and waits for the re-read."""

    def __init__(self, hosts=(), ttl=1):
        self.dir = harness.tmpdir()
        os.chmod(self.dir, 0o755)
        self.hosts = os.path.join(self.dir, "hosts")
        self.log = os.path.join(self.dir, "log")
        self._write(hosts)
        self.port = harness.free_port()
        self.proc = subprocess.Popen(
            ["dnsmasq", "-k", "--no-resolv", "--no-hosts", "--port=%d" % self.port,
             "--listen-address=127.0.0.1", "--bind-interfaces", "--addn-hosts=" + self.hosts,
             "--local-ttl=%d" % ttl, "--local=/%s/" % DOMAIN, "--log-queries",
             "--log-facility=" + self.log, "--user=root", "--group=root", "--pid-file="],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness._targets.append(self)
        wait_until(lambda: self._reads() >= 1, timeout=5, msg="dnsmasq started")

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def _write(self, hosts):
        with open(self.hosts + ".new", "w") as f:
            f.write("".join("%s\n" % h for h in hosts))
        os.rename(self.hosts + ".new", self.hosts)

    def _text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _reads(self):
        return self._text().count("read " + self.hosts)

    def set(self, hosts):
        n = self._reads()
        self._write(hosts)
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self._reads() > n, timeout=5, msg="dnsmasq re-read its hosts")

    def queries(self):
        return sum(1 for l in self._text().splitlines() if "query[" in l)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def name(n):
    return "%s.%s" % (n, DOMAIN)


def test_name_absent_at_start_then_added():
    """A name the resolver does not know yet is no config error and no exit: the probe
    fails with "no such host", then turns healthy once the record exists, no restart."""
    t = start_target()
    dns = Dnsmasq()
    d = start_daemon(config(http("api", "http://%s:%d/health" % (name("api"), t.port)),
                            tcp("db", "%s:%d" % (name("db"), t.port)), resolver=dns.server))
    for p in ("api", "db"):
        v = wait_probe(d, p, lambda v: v["healthy"] is False, "%s unhealthy" % p)
        eq(v["last_error"], "dns: %s: no such host" % name(p), "%s last_error" % p)
        eq(v["last_outcome"], "failure", "%s last_outcome" % p)
    dns.set(["127.0.0.1 " + name("api"), "127.0.0.1 " + name("db")])
    for p in ("api", "db"):
        wait_probe(d, p, lambda v: v["healthy"] is True, "%s healthy once the name exists" % p, timeout=10)
    assert d.alive()


def test_record_change_followed_within_ttl():
    """The address behind a name moves (a failover): probed follows it within the TTL."""
    t = start_target()  # listens on 127.0.0.1 only: 127.0.0.2 refuses
    dns = Dnsmasq(["127.0.0.2 " + name("db")], ttl=1)
    d = start_daemon(config(tcp("db", "%s:%d" % (name("db"), t.port)), resolver=dns.server))
    v = wait_probe(d, "db", lambda v: v["healthy"] is False, "db unhealthy on the dead address")
    eq(v["last_address"], "127.0.0.2:%d" % t.port, "last_address on the dead address")
    dns.set(["127.0.0.1 " + name("db")])
    changed = time.monotonic()
    v = wait_probe(d, "db", lambda v: v["healthy"] is True, "db healthy on the new address", timeout=5)
    eq(v["last_address"], "127.0.0.1:%d" % t.port, "last_address on the new address")
    # TTL 1 s, plus a period and the thresholds
    assert time.monotonic() - changed < 3 * harness.SCALE, "followed after %.1fs" % (time.monotonic() - changed)
    dns.set(["127.0.0.2 " + name("db")])
    wait_probe(d, "db", lambda v: v["healthy"] is False, "db unhealthy again", timeout=5)


def test_reload_changes_the_resolver():
    """A SIGHUP that changes `resolver` asks the new servers (the cache emptied): the
    probe, unchanged, keeps its counters and turns healthy."""
    t = start_target()
    old, new = Dnsmasq(), Dnsmasq(["127.0.0.1 " + name("db")])
    probes = [tcp("db", "%s:%d" % (name("db"), t.port))]
    d = start_daemon(config(*probes, resolver=old.server))
    v = wait_probe(d, "db", lambda v: v["healthy"] is False, "db unhealthy at the old resolver")
    d.write_config(config(*probes, resolver=new.server))
    d.signal(signal.SIGHUP)
    d.wait_log({"event": "reload"})
    w = wait_probe(d, "db", lambda v: v["healthy"] is True, "db healthy at the new resolver")
    assert w["attempts"] > v["attempts"], "counters kept across the reload: %r then %r" % (v, w)


def test_resolver_that_never_answers():
    """A DNS server that reads queries and never answers: the attempt ends as a timeout
    within its timeout, and the loop is never held (another probe keeps its schedule)."""
    t = start_target()
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", 0))
    try:
        d = start_daemon(config(tcp("named", "%s:%d" % (name("db"), t.port), timeout="300ms"),
                                tcp("literal", "127.0.0.1:%d" % t.port),
                                resolver="127.0.0.1:%d" % mute.getsockname()[1]))
        v = wait_probe(d, "named", lambda v: v["timeouts"] >= 3, "three timeouts", timeout=10)
        eq(v["last_outcome"], "timeout", "last_outcome")
        eq(v["last_error"], "timeout: no DNS answer within 300ms", "last_error")
        assert 250 <= v["last_duration_ms"] <= 300 + 200 * harness.SCALE, v
        eq(v["failures"], 0, "failures (the lookup's own timeout is later than the attempt's)")
        lit = probe(d, "literal")
        a0 = lit["attempts"]
        time.sleep(1.0)  # a measuring window: the literal probe runs every 100 ms meanwhile
        a1 = probe(d, "literal")["attempts"]
        assert a1 - a0 >= 7, "literal probe made %d attempts in 1 s while lookups hung" % (a1 - a0)
        eq(probe(d, "literal")["healthy"], True, "literal probe healthy")
        eq([l for l in d.logs() if l.get("event") in ("stall", "loop_busy")], [], "stall or loop_busy lines")
    finally:
        mute.close()


def test_several_addresses_first_dead():
    """Every address of the answer is tried in turn: dead ones first, the live one last."""
    t = start_target()
    dead = harness.free_port()
    dns = Dnsmasq(["127.0.0.2 " + name("multi"), "127.0.0.3 " + name("multi"), "127.0.0.1 " + name("multi")])
    d = start_daemon(config(tcp("db", "%s:%d" % (name("multi"), t.port)),
                            http("api", "http://%s:%d/health" % (name("multi"), t.port)),
                            tcp("none", "%s:%d" % (name("multi"), dead)), resolver=dns.server))
    for p in ("db", "api"):
        v = wait_probe(d, p, lambda v: v["successes"] >= 3, "%s succeeds" % p)
        eq((v["failures"], v["timeouts"], v["errors"]), (0, 0, 0), "%s failures, timeouts, errors" % p)
        eq(v["last_address"], "127.0.0.1:%d" % t.port, "%s last_address: the one that answered" % p)
    # all three refuse: each is tried in the answer's order (dnsmasq's: its hosts file's),
    # so the last tried is 127.0.0.1; "db" and "api" thus reached it past two dead ones
    v = wait_probe(d, "none", lambda v: v["failures"] >= 1, "none fails")
    eq(v["last_error"], "connect: connection refused", "none last_error")
    eq(v["last_address"], "127.0.0.1:%d" % dead, "none last_address: the last of the answer")


def test_many_probes_few_names_answered_from_the_cache():
    """1,000 probes to 5 names: answered from the cache, a query per name and record type
    per TTL at the server, not one per attempt."""
    t = start_target()
    names = [name("n%d" % i) for i in range(5)]
    dns = Dnsmasq(["127.0.0.1 " + n for n in names], ttl=2)
    probes = [tcp("p%04d" % i, "%s:%d" % (names[i % 5], t.port), period="500ms", startup_period="500ms")
              for i in range(1000)]
    d = start_daemon(config(*probes, resolver=dns.server))
    wait_until(lambda: all(p["successes"] >= 1 for p in harness.status(d)["probes"]), timeout=20,
               msg="the 1,000 probes succeeded")
    q0, t0 = dns.queries(), time.monotonic()
    st0 = sum(p["attempts"] for p in harness.status(d)["probes"])
    time.sleep(3.0)  # a measuring window: 6,000 attempts
    q1, t1 = dns.queries(), time.monotonic()
    st1 = sum(p["attempts"] for p in harness.status(d)["probes"])
    assert st1 - st0 >= 3000, "only %d attempts in the window" % (st1 - st0)
    # 5 names x 2 record types (A, AAAA) per 2 s TTL, plus one refresh in flight at each end
    most = 5 * 2 * ((t1 - t0) / 2 + 2)
    assert q1 - q0 <= most, "%d queries for %d attempts (at most %d expected)" % (q1 - q0, st1 - st0, most)
    assert all(p["failures"] == 0 and p["errors"] == 0 for p in harness.status(d)["probes"])


class Peer:
    """A tests/integration/kinds_peers.py server (python3-websockets, python3-grpcio)."""

    def __init__(self, *args):
        peers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kinds_peers.py")
        self.proc = subprocess.Popen(["/usr/bin/python3", peers] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        harness._targets.append(self)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), "peer %r printed %r" % (args, line)
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def test_every_kind_through_the_same_resolver():
    """https, websocket and grpc (libcurl underneath) resolve through probed's resolver
    too: the same "no such host" failure, then healthy once the names exist."""
    https = harness.start_https()
    ws, grpc = Peer("ws", "healthy"), Peer("grpc", "health")
    dns = Dnsmasq()
    probes = [
        http("https", "https://%s:%d/" % (name("secure"), https.port)),
        {"name": "ws", "type": "websocket", "url": "ws://%s:%d/" % (name("chat"), ws.port)},
        {"name": "grpc", "type": "grpc", "address": "%s:%d" % (name("rpc"), grpc.port)},
    ]
    d = start_daemon(config(*probes, resolver=dns.server))
    hosts = {"https": name("secure"), "ws": name("chat"), "grpc": name("rpc")}
    for p, host in hosts.items():
        v = wait_probe(d, p, lambda v: v["healthy"] is False, "%s unhealthy" % p)
        eq(v["last_error"], "dns: %s: no such host" % host, "%s last_error" % p)
    dns.set(["127.0.0.1 " + h for h in hosts.values()])
    ports = {"https": https.port, "ws": ws.port, "grpc": grpc.port}
    for p in hosts:
        v = wait_probe(d, p, lambda v: v["healthy"] is True, "%s healthy once its name exists" % p, timeout=10)
        eq(v["last_address"], "127.0.0.1:%d" % ports[p], "%s last_address (where libcurl connected)" % p)


def dns(pname, host, **kw):
    p = {"name": pname, "type": "dns", "host": host}
    p.update(kw)
    return p


def test_dns_kind_against_the_server():
    """The dns kind asks its `server` (or where every name goes), bypasses the cache, and
    judges `record` and `expect`; --dns NAME=HOST adds one."""
    dns_a = Dnsmasq(["127.0.0.1 " + name("db"), "::1 " + name("v6")], ttl=60)
    other = Dnsmasq(["127.0.0.5 " + name("db")])
    probes = [
        dns("plain", name("db"), server=dns_a.server),
        dns("expected", name("db"), server=dns_a.server, expect=["127.0.0.9", "127.0.0.1"]),
        dns("unexpected", name("db"), server=dns_a.server, expect=["127.0.0.9"]),
        dns("aaaa", name("db"), server=dns_a.server, record="AAAA"),
        dns("v6", name("v6"), server=dns_a.server, record="AAAA", expect=["::1"]),
        dns("missing", name("nope"), server=dns_a.server),
        dns("default", name("db"), expect=["127.0.0.5"]),  # through `resolver`
    ]
    d = start_daemon(config(*probes, resolver=other.server), args=["--dns", "flagged=" + name("db")])
    for p in ("plain", "expected", "v6", "default", "flagged"):
        wait_probe(d, p, lambda v: v["healthy"] is True, "%s healthy" % p)
    eq(probe(d, "expected")["last_address"], "127.0.0.1", "last_address of a dns probe: the address expected")
    for p, err in (("unexpected", "dns: %s: answered 127.0.0.1, none expected" % name("db")),
                   ("aaaa", "dns: %s: no such host" % name("db")),
                   ("missing", "dns: %s: no such host" % name("nope"))):
        v = wait_probe(d, p, lambda v: v["healthy"] is False, "%s unhealthy" % p)
        eq(v["last_error"], err, "%s last_error" % p)
    # no cache: every attempt asks, whatever the 60 s TTL (7 probes at dns_a, every 100 ms)
    q0 = dns_a.queries()
    a0 = probe(d, "plain")["attempts"]
    wait_until(lambda: probe(d, "plain")["attempts"] >= a0 + 5, timeout=5, msg="5 more attempts")
    assert dns_a.queries() - q0 >= 5, "%d queries for 5 attempts of one probe" % (dns_a.queries() - q0)


if __name__ == "__main__":
    harness.main()
