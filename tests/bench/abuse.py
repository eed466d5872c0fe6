"""The "abuse" section of the benchmark (BENCH_SECTIONS=abuse; issue 17): how the status
server answers the platform while other clients abuse it.

- idle: N idle connections held open by a process of their own (each one the server
  closes is opened again at once, so past the limit the server sees a steady stream of
  new connections), for N below, at and past probed's connection limit
  (SERVER_CONNECTION_LIMIT, 1024): /livez on a new connection each time, p50/p99/max,
  how many were answered within the deadline, and the peak RSS of the server. The same
  for the nginx reference of the status section (`return 200`, worker_connections
  1024, one worker per CPU).
- slow readers: probed with 10,000 tcp probes and 200 clients that ask for /metrics
  and never read: /livez as above and the peak RSS against the RSS before.

Runs inside tests/bench/bench.py (which calls section_abuse and report_abuse) or alone:
`/usr/bin/python3 tests/bench/abuse.py` (BUILD, BENCH_ABUSE_N, BENCH_ABUSE_REQUESTS); bench.py
hands itself over as B first."""
import multiprocessing
import os
import selectors
import socket
import sys
import time

B = None  # the running tests/bench/bench.py module (its TMP, processes and helpers)
MIB = 1024.0 * 1024.0

ABUSE_N = [int(x) for x in os.environ.get("BENCH_ABUSE_N", "512 1024 4096").replace(",", " ").split()]
REQUESTS = int(os.environ.get("BENCH_ABUSE_REQUESTS", "200"))
DEADLINE_S = 2.0
SLOW_READERS = 200
SLOW_PROBES = 10000


def horde_main(port, n, halt, ready, counts):
    """Holds n idle connections to port open, reopening each one the server closes."""
    sel = selectors.DefaultSelector()
    socks = set()

    def open_one():
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        except OSError:
            return
        socks.add(s)
        sel.register(s, selectors.EVENT_READ)

    for _ in range(n):
        open_one()
    ready.set()
    while not halt.is_set():
        for key, _ in sel.select(0.05):
            s = key.fileobj
            try:
                if s.recv(4096):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(s)
            socks.discard(s)
            s.close()
            counts[0] += 1
            open_one()
    for s in socks:
        s.close()


class Horde:
    def __init__(self, port, n):
        self.halt, self.ready = multiprocessing.Event(), multiprocessing.Event()
        self.counts = multiprocessing.Array("q", 1, lock=False)
        self.p = multiprocessing.Process(target=horde_main, args=(port, n, self.halt, self.ready, self.counts),
                                         daemon=True)
        self.p.start()
        if not self.ready.wait(60):
            raise RuntimeError("the idle connections were not opened within 60 s")

    def stop(self):
        self.halt.set()
        self.p.join(30)
        if self.p.is_alive():
            self.p.kill()
        return self.counts[0]


def livez_new_connection(port):
    """Seconds to a complete answer of GET /livez on a new connection; None if none
    within DEADLINE_S."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as s:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            got = b""
            while time.monotonic() - t0 < DEADLINE_S:
                b = s.recv(4096)
                if not b:
                    break
                got += b
    except OSError:
        return None
    if not got.startswith(b"HTTP/1.1 200"):
        return None
    return time.monotonic() - t0


def measure(proc, port, what):
    """REQUESTS /livez on new connections, 10 ms apart; peak RSS of proc sampled
    between them."""
    times, lost, peak = [], 0, 0
    for i in range(REQUESTS):
        t = livez_new_connection(port)
        if t is None:
            lost += 1
        else:
            times.append(t)
        if i % 10 == 0:
            peak = max(peak, proc.mem()["rss"])
        time.sleep(0.01)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(len(times) * f))] * 1e3 if times else None  # noqa: E731
    r = {"what": what, "requests": REQUESTS, "answered": len(times), "lost": lost, "p50_ms": q(0.5),
         "p99_ms": q(0.99), "max_ms": times[-1] * 1e3 if times else None, "rss_peak": peak}
    B.log("abuse: %s: answered %d/%d, p50 %s ms, p99 %s ms, max %s ms, RSS peak %.1f MiB"
        % (what, len(times), REQUESTS, B.fmt(r["p50_ms"], "%.2f"), B.fmt(r["p99_ms"], "%.2f"),
           B.fmt(r["max_ms"], "%.2f"), peak / MIB))
    return r


def section_abuse(targets, res):
    out = []
    ref_port = B.free_port()
    ref = B.nginx_reference(ref_port)
    try:
        for n in ABUSE_N:
            for name in ("probed", "nginx"):
                if name == "probed":
                    cfg, port = B.probed_config("abuse-%d" % n, B.tcp_probes(targets.base, 10), period="10s")
                    p = B.start_probed("abuse-probed-%d" % n, cfg, port)
                else:
                    p, port = ref, ref_port
                B.log("abuse: %s with %d idle connections" % (name, n))
                try:
                    h = Horde(port, n)
                    try:
                        r = measure(p, port, "%s, %d idle connections" % (name, n))
                    finally:
                        r_closed = h.stop()
                    r.update({"target": name, "idle": n, "closed_by_server": r_closed})
                    out.append(r)
                finally:
                    if name == "probed":
                        p.stop()
                    else:
                        B.wait_http(ref_port, "/livez", timeout=30, proc=ref)
    finally:
        ref.stop()

    B.log("abuse: probed, %d probes, %d slow readers of /metrics" % (SLOW_PROBES, SLOW_READERS))
    cfg, port = B.probed_config("abuse-slow", B.tcp_probes(targets.base, SLOW_PROBES), period="10s")
    p = B.start_probed("abuse-probed-slow", cfg, port)
    readers = []
    try:
        time.sleep(3)  # every first attempt ends (10,000 spread over about 1 s, 1 s timeout)
        before = 0
        for _ in range(5):
            before = max(before, p.mem()["rss"])
            time.sleep(0.2)
        st, body = B.http_get(port, "/metrics", timeout=30)
        doc = len(body) if st == 200 else None
        for _ in range(SLOW_READERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(s)
        r = measure(p, port, "probed, %d probes, %d slow /metrics readers" % (SLOW_PROBES, SLOW_READERS))
        r.update({"target": "probed", "slow_readers": SLOW_READERS, "probes": SLOW_PROBES,
                  "rss_before": before, "document": doc})
        out.append(r)
    finally:
        for s in readers:
            s.close()
        p.stop()
    res["abuse"] = out


def report_abuse(res):
    L = ["## Abuse: /livez on new connections while other clients abuse the status server", "",
         "%d requests 10 ms apart, each on a new connection, deadline %.0f s (a request without "
         "an answer by then is lost); idle connections are held by a process of their own that "
         "reopens each one the server closes. probed's limit is 1024 connections (past it the "
         "oldest idle one is shed); the nginx reference has worker_connections 1024 per worker."
         % (REQUESTS, DEADLINE_S), "",
         "| server | load | answered | p50 ms | p99 ms | max ms | peak RSS MiB | connections closed by the server |",
         "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res.get("abuse", []):
        if "idle" in r:
            load = "%d idle connections" % r["idle"]
            closed = "%d" % r["closed_by_server"]
        else:
            load = "%d slow /metrics readers, %d probes (document %s MiB, RSS before %s MiB)" % (
                r["slow_readers"], r["probes"], B.mib(r["document"]), B.mib(r["rss_before"]))
            closed = "-"
        L.append("| %s | %s | %d/%d | %s | %s | %s | %s | %s |"
                 % (r["target"], load, r["answered"], r["requests"], B.fmt(r["p50_ms"], "%.2f"),
                    B.fmt(r["p99_ms"], "%.2f"), B.fmt(r["max_ms"], "%.2f"), B.mib(r["rss_peak"]), closed))
    L.append("")
    return L


def main():
    global B
    import bench as B
    import resource
    import shutil
    import tempfile
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    B.TMP = tempfile.mkdtemp(prefix="probed-abuse-")
    os.chmod(B.TMP, 0o755)
    res = {}
    try:
        base = B.PORT_BASE
        for _ in range(10):
            if B.port_block_free(base, 1000):
                break
            base += 1000
        targets = B.Targets(base, 1000)
        section_abuse(targets, res)
    finally:
        B.cleanup()
        shutil.rmtree(B.TMP, ignore_errors=True)
    print("\n".join(report_abuse(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
