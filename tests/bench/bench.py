#!/usr/bin/python3
"""probed benchmark suite (`make bench`, README "Benchmarks"). Not part of `make test`.

Design. One run measures probed and its peers side by side on this machine, each peer
alone in its window (peers run alternately, never together), against one local nginx
that serves every target port (127.0.0.1:BASE..BASE+999) and writes an access log line
`$msec $request_uri` per request. Each peer probes its own path prefix (/probed/,
/haproxy/, /blackbox/, /curl/), so the log tells how many probes each one really
performed inside its measurement window. Sections:

- fleet: N http targets at a 1 s period for BENCH_SECONDS (after a warm-up): CPU per
  probe, probes performed vs expected, private and total RSS. CPU comes from a cpuacct
  cgroup per peer when the host lets us create one (nanosecond totals that include
  exited children and threads), and always also from /proc/PID/stat
  (utime+stime+cutime+cstime summed over the peer's session); the table says which.
  blackbox-exporter's scraper is measured separately and excluded from its cost.
- status: wrk -t2 -c64 --latency on /livez of probed (idle, then while probing 1,000
  targets) and of an nginx `return 200` reference, alternating, BENCH_ROUNDS rounds,
  medians.
- grpc (issue 19): gRPC health Check requests/s and p99 on the status port with h2load
  (nghttp2-client; h2c prior knowledge, -c64 -t2, one stream at a time per connection
  like wrk's requests, and -m10 multiplexed), beside wrk /livez on the same probed in
  the same run, BENCH_ROUNDS rounds alternating, medians. p99 comes from h2load's
  per-request log (--log-file). Goal: Check at least half of /livez's req/s.
- names (issue 12): N http targets at 1 s addressed by host name (BENCH_NAMES names
  served by a dnsmasq on loopback with a TTL of BENCH_NAMES_TTL seconds), probed beside
  probed with literal addresses and HAProxy resolving the same names at runtime (a
  `resolvers` section on the same dnsmasq): CPU per probe as in fleet, and the DNS
  queries each one sent in its window (dnsmasq's query log). Goal: below HAProxy's.
- lifecycle: exec to first /livez 200, SIGTERM to exit with 1,000 hung http attempts,
  target ready to /startup 200.
- memory: private / anonymous / total RSS with 10 and 10,000 probes at a 10 s period.
- fairness (issue 10; not in the default BENCH_SECTIONS): schedule lateness of a 100 ms
  http probe (p50, p99, max of the gaps between its requests in nginx's log, less
  100 ms) alone and beside hostile peers (tests/tools/hostile, hostile_grpc.py, yes)
  streaming as fast as probed reads, and the CPU probed spends per second meanwhile.
- throttled (issue 9; tests/bench/throttled.py): probed running only in short windows,
  as under request-based CPU allocation: from an app's hang and from its crash to
  /livez 503, in wall and awake seconds, beside instance-based CPU; false failures of a
  slow but healthy app over 30 windows (must be 0).
- abuse (issue 17; not in the default BENCH_SECTIONS; tests/bench/abuse.py): /livez
  p50/p99/max on new connections while N idle connections are held (N below, at and
  past the status server's limit; nginx beside it) and while 200 slow readers hold
  /metrics at 10,000 probes, with the peak RSS of each.

Every process is started in its own session and registered; on any exit path
(normal, exception, SIGINT/SIGTERM/SIGHUP) each registered process group is sent
SIGTERM, then SIGKILL, and the temporary directory and cgroups are removed. Every wait
is bounded by a deadline. Only 127.0.0.1 is used.
"""
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("BUILD", "build")
PROBED = os.environ.get("PROBED", os.path.join(ROOT, BUILD, "probed"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "30"))
FLEET_N = [int(x) for x in os.environ.get("BENCH_N", "10 1000").replace(",", " ").split()]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
SECTIONS = os.environ.get("BENCH_SECTIONS", "fleet names status grpc lifecycle memory throttled").replace(",", " ").split()
PEERS = os.environ.get("BENCH_PEERS", "probed haproxy blackbox curl").replace(",", " ").split()
NAMES = int(os.environ.get("BENCH_NAMES", "10"))
NAMES_TTL = int(os.environ.get("BENCH_NAMES_TTL", "1"))
NAMES_PEERS = os.environ.get("BENCH_NAMES_PEERS", "probed-names probed haproxy-names").replace(",", " ").split()
DNS = {}  # the names section's dnsmasq: port, log
MEM_N = [int(x) for x in os.environ.get("BENCH_MEM_N", "10 10000").replace(",", " ").split()]
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "20000"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
OUT_DIR = os.environ.get("BENCH_OUT_DIR", HERE)
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
TARGET_PORTS = max(FLEET_N + [1000])  # the memory section cycles over 1,000 ports
HUNG_N = 1000
CURL_PARALLEL = int(os.environ.get("BENCH_CURL_PARALLEL", str(os.cpu_count() or 2)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024.0 * 1024.0

TMP = None
PROCS = []          # every Proc started, stopped in reverse order by cleanup()
CGROUPS = []        # cgroup directories created, removed by cleanup()
CG_ROOT = None      # (kind, directory) of our cgroup parent, or None
CHILD_ENV = {k: v for k, v in os.environ.items()
             if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def cgroup_setup():
    """Create our cgroup parent if the host allows; CPU is then exact per peer."""
    global CG_ROOT
    candidates = []
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        candidates.append(("v2", "/sys/fs/cgroup"))
    candidates.append(("v1", "/sys/fs/cgroup/cpuacct"))
    for kind, base in candidates:
        d = os.path.join(base, "probed-bench-%d" % os.getpid())
        try:
            os.mkdir(d)
        except OSError:
            continue
        CGROUPS.append(d)
        CG_ROOT = (kind, d)
        return
    CG_ROOT = None


def cgroup_new(name):
    if CG_ROOT is None:
        return None
    d = os.path.join(CG_ROOT[1], "%s-%d" % (name, len(CGROUPS)))
    try:
        os.mkdir(d)
    except OSError:
        return None
    CGROUPS.append(d)
    return d


def cgroup_cpu_us(d):
    if d is None:
        return None
    try:
        if CG_ROOT[0] == "v1":
            with open(os.path.join(d, "cpuacct.usage")) as f:
                return int(f.read()) / 1000.0
        with open(os.path.join(d, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return float(v)
    except (OSError, ValueError):
        return None
    return None


class Proc:
    """A started process in its own session (pgid == sid == pid), optionally in a cgroup."""

    def __init__(self, name, argv, cgroup=True, stdout=None, stderr=None, cwd=None):
        self.name = name
        self.cg = cgroup_new(name) if cgroup else None
        out = open(stdout or os.path.join(TMP, name + ".out"), "ab")
        err = open(stderr or os.path.join(TMP, name + ".err"), "ab")
        cg = self.cg
        procs_file = None
        if cg is not None:
            procs_file = os.path.join(cg, "cgroup.procs")

        def preexec():
            child_priority()
            if procs_file is not None:
                try:
                    with open(procs_file, "w") as f:
                        f.write(str(os.getpid()))
                except OSError:
                    pass

        self.t_spawn = time.perf_counter()
        try:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      start_new_session=True, preexec_fn=preexec, cwd=cwd,
                                      env=CHILD_ENV)
        finally:
            out.close()
            err.close()
        # Popen returns once the child's execve succeeded (its close-on-exec error pipe
        # closed): the moment probed starts, without the harness's fork and preexec.
        self.t_exec = time.perf_counter()
        self.pid = self.p.pid
        PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM the whole process group, then SIGKILL; bounded."""
        if self in PROCS:
            PROCS.remove(self)
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and session_pids(self.pid):
            time.sleep(0.02)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(2)
        except subprocess.TimeoutExpired:
            pass
        return self.p.returncode

    def cpu_us(self):
        """(cgroup µs or None, /proc µs) consumed so far by the whole session."""
        return cgroup_cpu_us(self.cg), session_cpu_us(self.pid)

    def mem(self):
        return session_mem(self.pid)


def cleanup():
    for p in reversed(list(PROCS)):
        try:
            p.stop(timeout=3)
        except Exception as e:  # keep cleaning up the others
            log("cleanup of %s: %s" % (p.name, e))
    for d in reversed(CGROUPS):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    CGROUPS.clear()
    if TMP and os.environ.get("BENCH_KEEP", "") in ("", "0"):
        shutil.rmtree(TMP, ignore_errors=True)


def child_priority():
    """Children run at nice 0 even though the harness raised its own priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


def on_signal(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


# ---------------------------------------------------------------- /proc readers


def proc_stat(pid):
    """(session, utime+stime+cutime+cstime ticks) of one process, or None."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(b")") + 2:].split()
    return int(rest[3]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])


def session_pids(sid):
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        st = proc_stat(e)
        if st is not None and st[0] == sid:
            out.append(int(e))
    return out


def session_cpu_us(sid):
    """CPU of every live process of the session, plus what their reaped children used."""
    ticks = 0
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        st = proc_stat(e)
        if st is not None and st[0] == sid:
            ticks += st[1]
    return ticks * 1e6 / CLK_TCK


def smaps(pid):
    r = {"rss": 0, "private": 0, "anon": 0}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.split()
                if not v:
                    continue
                kb = int(v[0]) * 1024
                if k == "Rss":
                    r["rss"] += kb
                elif k in ("Private_Clean", "Private_Dirty"):
                    r["private"] += kb
                elif k == "Anonymous":
                    r["anon"] += kb
    except (OSError, ValueError):
        pass
    return r


def session_mem(sid):
    tot = {"rss": 0, "private": 0, "anon": 0, "procs": 0}
    for pid in session_pids(sid):
        m = smaps(pid)
        for k in ("rss", "private", "anon"):
            tot[k] += m[k]
        tot["procs"] += 1
    return tot


# ---------------------------------------------------------------- network helpers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_block_free(base, n):
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited early (rc %s), see %s/%s.err"
                               % (proc.name, proc.p.returncode, TMP, proc.name))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %.0fs" % (port, timeout))


def http_get(port, path, timeout=2.0):
    """(status, body) over a fresh connection, or (None, error string)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return None, str(e)
    try:
        s.settimeout(timeout)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   % path).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        return int(parts[1]), body
    except (OSError, ValueError, IndexError) as e:
        return None, str(e)
    finally:
        s.close()


def status_code(port, path, timeout=1.0):
    """Status of GET path, reading only the status line; None when unreachable."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    try:
        s.settimeout(timeout)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   % path).encode())
        data = b""
        while b"\r\n" not in data:
            b = s.recv(256)
            if not b:
                break
            data += b
        return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None
    finally:
        s.close()


def wait_http(port, path, want=200, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited early (rc %s), see %s/%s.err"
                               % (proc.name, proc.p.returncode, TMP, proc.name))
        if status_code(port, path) == want:
            return
        time.sleep(0.02)
    raise RuntimeError("127.0.0.1:%d%s not %d after %.0fs" % (port, path, want, timeout))


def conns_to(port):
    """Client-side TCP connections (any state but LISTEN) to 127.0.0.1:port."""
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                rem, st = fields[2], fields[3]
                if int(rem.split(":")[1], 16) == port and st != "0A":
                    n += 1
    except OSError:
        pass
    return n


def probed_status(port):
    st, body = http_get(port, "/status", timeout=5)
    if st != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# ---------------------------------------------------------------- peers


class Targets:
    """One nginx serving every target port; access log `$msec $request_uri`."""

    def __init__(self, base, n):
        self.base, self.n = base, n
        self.log = os.path.join(TMP, "targets.access.log")
        conf = os.path.join(TMP, "targets.conf")
        listens = "".join("        listen 127.0.0.1:%d;\n" % p for p in range(base, base + n))
        with open(conf, "w") as f:
            f.write("""daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid %(tmp)s/targets.pid;
error_log %(tmp)s/targets.error.log warn;
events { worker_connections 16384; }
http {
    log_format bench '$msec $request_uri';
    access_log %(log)s bench;
    keepalive_timeout 5s;
    server {
%(listens)s        location / { return 200 "ok\\n"; }
    }
}
""" % {"tmp": TMP, "log": self.log, "listens": listens})
        self.proc = Proc("targets-nginx", ["nginx", "-e", os.path.join(TMP, "targets.startup.log"),
                                           "-p", TMP, "-c", conf], cgroup=False)
        wait_port(base, proc=self.proc)
        wait_port(base + n - 1, proc=self.proc)

    def offset(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def count(self, prefix, t0, t1, offset=0):
        """Requests whose path starts with prefix, logged in [t0, t1) wall time."""
        n = 0
        pb = prefix.encode()
        with open(self.log, "rb") as f:
            f.seek(offset)
            for line in f:
                ts, _, uri = line.partition(b" ")
                if uri.startswith(pb):
                    try:
                        t = float(ts)
                    except ValueError:
                        continue
                    if t0 <= t < t1:
                        n += 1
        return n


def nginx_reference(port):
    conf = os.path.join(TMP, "ref.conf")
    with open(conf, "w") as f:
        f.write("""daemon off;
worker_processes auto;
pid %(tmp)s/ref.pid;
error_log %(tmp)s/ref.error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:%(port)d;
        location = /livez { return 200 "ok\\n"; }
    }
}
""" % {"tmp": TMP, "port": port})
    p = Proc("ref-nginx", ["nginx", "-e", os.path.join(TMP, "ref.startup.log"), "-p", TMP,
                           "-c", conf])
    wait_http(port, "/livez", proc=p)
    return p


def probed_config(name, probes, period="1s", timeout="1s", extra=None, scopes=None):
    port = free_port()
    cfg = {"listen": "127.0.0.1:%d" % port, "log_level": "warn", "drain": "0s",
           "defaults": {"period": period, "timeout": timeout}, "probes": probes}
    for p in probes:
        p.setdefault("scopes", scopes or ["liveness", "readiness"])
    if extra:
        cfg.update(extra)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path, port


def http_probes(base, n, prefix, ports=1000):
    return [{"name": "t%d" % i, "type": "http",
             "url": "http://127.0.0.1:%d%s" % (base + i % ports, prefix)} for i in range(n)]


def tcp_probes(base, n, ports=1000):
    return [{"name": "t%d" % i, "type": "tcp", "address": "127.0.0.1:%d" % (base + i % ports)}
            for i in range(n)]


def start_probed(name, cfg_path, port, wait=True):
    p = Proc(name, [PROBED, "-c", cfg_path])
    if wait:
        wait_http(port, "/livez", proc=p)
    return p


def name_of(i):
    return "n%d.bench.test" % (i % NAMES)


def start_haproxy(base, n, names=False):
    cfg = os.path.join(TMP, "haproxy.cfg")
    prefix = "/haproxy-names/" if names else "/haproxy/"
    resolvers, server_opts = "", ""
    if names:  # runtime resolution of the same names, on the same dnsmasq
        resolvers = """resolvers dns
    nameserver d1 127.0.0.1:%d
    hold valid %ds
    timeout resolve 1s
    timeout retry 1s
""" % (DNS["port"], NAMES_TTL)
        server_opts = " resolvers dns init-addr none resolve-prefer ipv4 resolve-opts allow-dup-ip"
    servers = "".join("    server t%d %s:%d\n" % (i, name_of(i) if names else "127.0.0.1", base + i)
                      for i in range(n))
    with open(cfg, "w") as f:
        f.write("""global
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s
frontend fe
    bind 127.0.0.1:%d
    default_backend targets
backend targets
    option httpchk GET %s
    default-server check inter 1s%s
%s%s""" % (free_port(), prefix, server_opts, servers, resolvers))
    p = Proc("haproxy", ["haproxy", "-db", "-f", cfg])
    return p


def start_blackbox(base, n):
    cfg = os.path.join(TMP, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("""modules:
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
""")
    port = free_port()
    exp = Proc("blackbox", ["prometheus-blackbox-exporter", "--config.file=" + cfg,
                            "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"])
    wait_http(port, "/-/healthy", proc=exp)
    seconds = WARMUP + SECONDS + 2
    scr = Proc("scraper", ["/usr/bin/python3", os.path.join(HERE, "scraper.py"), str(port),
                           str(base), str(n), "/blackbox/", str(seconds)])
    return exp, scr


def start_curl_loop(base, n):
    return Proc("curl-loop", ["/bin/sh", os.path.join(HERE, "curl_loop.sh"), str(base), str(n),
                              "/curl/", str(CURL_PARALLEL)])


# ---------------------------------------------------------------- fleet


def measure_window(procs, seconds, sample_mem=True):
    """CPU deltas of each proc over a window, and max memory sampled during it."""
    c0 = [p.cpu_us() for p in procs]
    t0w, t0 = time.time(), time.monotonic()
    mem = [{"rss": 0, "private": 0, "anon": 0, "procs": 0} for _ in procs]
    end = t0 + seconds
    step = max(1.0, seconds / 6.0)  # a few memory samples: reading smaps is not free
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(step, end - now))
        if sample_mem and time.monotonic() < end - 0.5:
            for i, p in enumerate(procs):
                m = p.mem()
                for k in m:
                    mem[i][k] = max(mem[i][k], m[k])
        for p in procs:
            if not p.alive():
                raise RuntimeError("%s exited during the window (rc %s), see %s/%s.err"
                                   % (p.name, p.p.returncode, TMP, p.name))
    c1 = [p.cpu_us() for p in procs]
    t1w, t1 = time.time(), time.monotonic()
    out = []
    for i in range(len(procs)):
        cg = None if c0[i][0] is None or c1[i][0] is None else c1[i][0] - c0[i][0]
        out.append({"cpu_us_cgroup": cg, "cpu_us_proc": c1[i][1] - c0[i][1], "mem": mem[i]})
    return out, t0w, t1w, t1 - t0


def fleet_one(targets, peer, n, results):
    base = targets.base
    log("fleet: %s, N=%d, %ds" % (peer, n, SECONDS))
    off = targets.offset()
    scr = None
    prof = None
    if peer == "probed":
        cfg, port = probed_config("fleet-probed-%d" % n, http_probes(base, n, "/probed/"))
        main = start_probed("fleet-probed", cfg, port)
    elif peer == "probed-names":
        probes = [{"name": "t%d" % i, "type": "http",
                   "url": "http://%s:%d/probed-names/" % (name_of(i), base + i % 1000)} for i in range(n)]
        cfg, port = probed_config("names-probed-%d" % n, probes, extra={"resolver": "127.0.0.1:%d" % DNS["port"]})
        main = start_probed("names-probed", cfg, port)
    elif peer == "haproxy":
        main = start_haproxy(base, n)
    elif peer == "haproxy-names":
        main = start_haproxy(base, n, names=True)
    elif peer == "blackbox":
        main, scr = start_blackbox(base, n)
    elif peer == "curl":
        main = start_curl_loop(base, n)
    else:
        raise RuntimeError("unknown peer %s" % peer)
    try:
        time.sleep(WARMUP)
        if not main.alive():
            raise RuntimeError("%s exited (rc %s), see %s" % (main.name, main.p.returncode, TMP))
        procs = [main] + ([scr] if scr else [])
        q0 = dns_queries()
        win, t0w, t1w, dur = measure_window(procs, SECONDS)
        q1 = dns_queries()
        performed = targets.count("/%s/" % peer, t0w, t1w, off)
        expected = n * dur
        w = win[0]
        cpu = w["cpu_us_cgroup"] if w["cpu_us_cgroup"] is not None else w["cpu_us_proc"]
        r = {"peer": peer, "n": n, "seconds": round(dur, 3), "performed": performed,
             "expected": round(expected), "kept": performed / expected if expected else 0,
             "cpu_us": cpu, "cpu_source": "cgroup" if w["cpu_us_cgroup"] is not None else "proc",
             "cpu_us_cgroup": w["cpu_us_cgroup"], "cpu_us_proc": w["cpu_us_proc"],
             "cpu_us_per_probe": cpu / performed if performed else None,
             "cpu_percent": 100.0 * cpu / (dur * 1e6),
             "private_rss": w["mem"]["private"], "anon_rss": w["mem"]["anon"],
             "rss": w["mem"]["rss"], "processes": w["mem"]["procs"]}
        if peer.endswith("-names"):
            r["dns_queries_per_s"] = (q1 - q0) / dur if dur else None
        if scr:
            s = win[1]
            scpu = s["cpu_us_cgroup"] if s["cpu_us_cgroup"] is not None else s["cpu_us_proc"]
            r["scraper_cpu_us"] = scpu
            r["scraper_cpu_us_per_probe"] = scpu / performed if performed else None
        if peer == "probed" and n >= 1000 and PROFILE:
            prof = profile_probed(main)
            r["profile"] = prof
        results.append(r)
        log("  performed %d/%d (%.0f%%), %s us/probe, private %.2f MiB"
            % (performed, expected, 100 * r["kept"],
               "%.1f" % r["cpu_us_per_probe"] if r["cpu_us_per_probe"] else "-",
               r["private_rss"] / MIB))
    finally:
        if scr:
            scr.stop()
        main.stop()
    time.sleep(1)


def profile_probed(p):
    """perf profile of a running probed (after its measured window, not during it)."""
    if shutil.which("perf") is None:
        return None
    data = os.path.join(TMP, "perf.data")
    secs = min(SECONDS, 15)
    log("  profiling probed with perf for %ds" % secs)
    rc = subprocess.run(["perf", "record", "-q", "-F", "997", "-g", "-p", str(p.pid), "-o", data,
                         "--", "sleep", str(secs)], stdout=subprocess.DEVNULL,
                        preexec_fn=child_priority,
                        stderr=subprocess.DEVNULL, timeout=secs + 30).returncode
    if rc != 0:
        return None
    def report(sort, limit):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                            "--sort", sort, "--percent-limit", limit],
                           capture_output=True, text=True, timeout=120).stdout
        return [re.sub(r"(\s+-)+\s*$", "", ln) for ln in r.splitlines()
                if ln.strip() and not ln.startswith("#")]
    text = "\n".join(["by shared object:"] + report("dso", "0.5")[:10] +
                      ["", "by symbol (self):"] + report("dso,sym", "0.7")[:30])
    with open(os.path.join(OUT_DIR, "profile.txt"), "w") as f:
        f.write("perf record -F 997 -g on probed probing 1,000 http targets at 1 s, %ds\n"
                "(after the measured window)\n\n%s\n" % (secs, text))
    return text


def section_fleet(targets, res):
    out = []
    for n in FLEET_N:
        for peer in PEERS:
            try:
                fleet_one(targets, peer, n, out)
            except RuntimeError as e:
                log("  %s N=%d failed: %s" % (peer, n, e))
                out.append({"peer": peer, "n": n, "error": str(e)})
    res["fleet"] = out


# ---------------------------------------------------------------- names


def dns_queries():
    """Queries dnsmasq logged so far (0 when the names section's dnsmasq is not running)."""
    if not DNS:
        return 0
    try:
        with open(DNS["log"], errors="replace") as f:
            return sum(1 for line in f if "query[" in line)
    except FileNotFoundError:
        return 0


def section_names(targets, res):
    d = os.path.join(TMP, "dnsmasq")
    os.makedirs(d, exist_ok=True)
    hosts, qlog, port = os.path.join(d, "hosts"), os.path.join(d, "queries.log"), free_port()
    with open(hosts, "w") as f:
        f.write("".join("127.0.0.1 %s\n" % name_of(i) for i in range(NAMES)))
    dns = Proc("dnsmasq", ["dnsmasq", "-k", "--no-resolv", "--no-hosts", "--port=%d" % port,
                           "--listen-address=127.0.0.1", "--bind-interfaces", "--addn-hosts=" + hosts,
                           "--local-ttl=%d" % NAMES_TTL, "--local=/bench.test/", "--log-queries",
                           "--log-facility=" + qlog, "--user=root", "--group=root", "--pid-file=",
                           "--cache-size=0"], cgroup=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (os.path.exists(qlog) and "read " + hosts in open(qlog).read()):
        time.sleep(0.05)
    DNS.update(port=port, log=qlog)
    out = []
    try:
        for n in FLEET_N:
            if n < 100:
                continue
            for peer in NAMES_PEERS:
                try:
                    fleet_one(targets, peer, n, out)
                except RuntimeError as e:
                    log("  %s N=%d failed: %s" % (peer, n, e))
                    out.append({"peer": peer, "n": n, "error": str(e)})
    finally:
        DNS.clear()
        dns.stop()
    res["names"] = out


# ---------------------------------------------------------------- status server


WRK_RE_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_RE_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(port, path="/livez"):
    cmd = ["wrk", "-t2", "-c64", "-d%ds" % WRK_SECONDS, "--latency",
           "http://127.0.0.1:%d%s" % (port, path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=WRK_SECONDS + 30,
                       env=CHILD_ENV, preexec_fn=child_priority)
    m, q = WRK_RE_RPS.search(r.stdout), WRK_RE_P99.search(r.stdout)
    if not m or not q:
        raise RuntimeError("wrk output not understood: %s %s" % (r.stdout, r.stderr))
    p99 = float(q.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[q.group(2)]
    errors = 0
    for pat in (r"Non-2xx or 3xx responses:\s+(\d+)",):
        mm = re.search(pat, r.stdout)
        if mm:
            errors += int(mm.group(1))
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                   r.stdout)
    if se:
        errors += sum(int(x) for x in se.groups())
    return {"rps": float(m.group(1)), "p99_ms": p99, "errors": errors}


def section_status(targets, res):
    out = {"rounds": ROUNDS, "wrk": "wrk -t2 -c64 -d%ds --latency" % WRK_SECONDS, "runs": []}
    ref_port = free_port()
    ref = nginx_reference(ref_port)
    try:
        cfg, port = probed_config("status-idle", http_probes(targets.base, 10, "/idle/"),
                                  period="10s")
        p = start_probed("status-probed-idle", cfg, port)
        try:
            for r in range(ROUNDS):
                for name, prt in (("probed idle", port), ("nginx", ref_port)):
                    log("status: round %d %s" % (r + 1, name))
                    w = wrk(prt)
                    w.update({"target": name, "round": r + 1, "background": "none"})
                    out["runs"].append(w)
        finally:
            p.stop()
        nb = 1000
        cfg, port = probed_config("status-busy", http_probes(targets.base, nb, "/busy/"))
        p = start_probed("status-probed-busy", cfg, port)
        try:
            time.sleep(WARMUP)
            for r in range(ROUNDS):
                for name, prt in (("probed probing 1000", port), ("nginx", ref_port)):
                    log("status: round %d %s" % (r + 1, name))
                    off = targets.offset()
                    t0 = time.time()
                    w = wrk(prt)
                    t1 = time.time()
                    w["probes_per_s"] = targets.count("/busy/", t0, t1, off) / (t1 - t0)
                    w.update({"target": name, "round": r + 1,
                              "background": "probed probing 1000 targets"})
                    out["runs"].append(w)
        finally:
            p.stop()
    finally:
        ref.stop()
    res["status"] = out


GRPC_CHECK = "/grpc.health.v1.Health/Check"


def h2load_check(port, streams, service="liveness"):
    """h2load's Check rate against probed: {"rps", "p99_ms", "errors"}."""
    body = os.path.join(TMP, "check-%s.bin" % service)
    if not os.path.exists(body):
        b = service.encode()
        msg = (b"\x0a" + bytes([len(b)]) + b) if b else b""
        with open(body, "wb") as f:
            f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)  # gRPC length prefix
    logf = os.path.join(TMP, "h2load.log")
    cmd = ["h2load", "-D", str(WRK_SECONDS), "-c64", "-t2", "-m%d" % streams, "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", logf,
           "http://127.0.0.1:%d%s" % (port, GRPC_CHECK)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=WRK_SECONDS + 60,
                       env=CHILD_ENV, preexec_fn=child_priority)
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", r.stdout)
    q = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", r.stdout)
    if not m or not q:
        raise RuntimeError("h2load output not understood: %s %s" % (r.stdout[-2000:], r.stderr[-2000:]))
    lat = []
    with open(logf) as f:
        for line in f:
            parts = line.split()  # start (µs), status, latency (µs)
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    os.unlink(logf)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] / 1000.0 if lat else None
    return {"rps": float(m.group(2)), "p99_ms": p99,
            "errors": int(q.group(5)) + int(q.group(6)) + int(q.group(7))}


def section_grpc(targets, res):
    out = {"rounds": ROUNDS, "wrk": "wrk -t2 -c64 -d%ds --latency" % WRK_SECONDS,
           "h2load": "h2load -D %d -c64 -t2 -m{1,10} -d <HealthCheckRequest> -H 'content-type: "
                     "application/grpc' -H 'te: trailers'" % WRK_SECONDS, "runs": []}
    cfg, port = probed_config("grpc", http_probes(targets.base, 10, "/grpc/"), period="10s")
    p = start_probed("grpc-probed", cfg, port)
    try:
        for r in range(ROUNDS):
            for name in ("/livez (wrk)", "Check (h2load -m1)", "Check (h2load -m10)"):
                log("grpc: round %d %s" % (r + 1, name))
                if name.startswith("/livez"):
                    w = wrk(port)
                else:
                    w = h2load_check(port, 10 if "m10" in name else 1)
                w.update({"target": name, "round": r + 1})
                out["runs"].append(w)
    finally:
        p.stop()
    res["grpc"] = out


# ---------------------------------------------------------------- lifecycle


def exec_to_livez(targets):
    """(ms from execve, ms from the Popen call) to the first /livez 200."""
    cfg, port = probed_config("exec-livez", http_probes(targets.base, 10, "/exec/"))
    t0 = time.perf_counter()
    p = Proc("lifecycle-exec", [PROBED, "-c", cfg], cgroup=False)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if status_code(port, "/livez", timeout=1) == 200:
                t = time.perf_counter()
                return (t - p.t_exec) * 1e3, (t - t0) * 1e3
            if not p.alive():
                raise RuntimeError("probed exited early, see %s" % TMP)
            time.sleep(0.0002)
        raise RuntimeError("/livez not 200 within 10s")
    finally:
        p.stop()


def sigterm_hung():
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind(("127.0.0.1", 0))
    hung.listen(65535)  # never accepted: connections complete in the kernel and hang
    hport = hung.getsockname()[1]
    try:
        probes = [{"name": "h%d" % i, "type": "http",
                   "url": "http://127.0.0.1:%d/hung/%d" % (hport, i)} for i in range(HUNG_N)]
        cfg, port = probed_config("hung", probes, period="60s", timeout="30s")
        p = start_probed("lifecycle-hung", cfg, port)
        try:
            deadline = time.monotonic() + 30
            running = 0
            while time.monotonic() < deadline:  # every attempt has its connection up
                running = conns_to(hport)
                if running >= HUNG_N:
                    break
                time.sleep(0.1)
            if running < HUNG_N:
                raise RuntimeError("only %d of %d attempts in flight" % (running, HUNG_N))
            time.sleep(0.2)
            t0 = time.perf_counter()
            os.kill(p.pid, signal.SIGTERM)
            try:
                rc = p.p.wait(10)
            except subprocess.TimeoutExpired:
                raise RuntimeError("probed did not exit within 10s of SIGTERM")
            ms = (time.perf_counter() - t0) * 1e3
            return ms, rc
        finally:
            p.stop()
    finally:
        hung.close()


def ready_to_startup():
    tport = free_port()
    probes = [{"name": "app", "type": "tcp", "address": "127.0.0.1:%d" % tport,
               "scopes": ["startup"]}]
    cfg, port = probed_config("startup", probes, period="10s",
                              extra={"defaults": {"period": "10s", "timeout": "1s",
                                                  "startup_period": "100ms"}})
    p = Proc("lifecycle-startup", [PROBED, "-c", cfg])
    lst = None
    try:
        wait_http(port, "/startup", want=503, proc=p)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # two refused attempts: the 100 ms cadence runs
            st = probed_status(port)
            if st and st["probes"][0].get("attempts", 0) >= 2:
                break
            time.sleep(0.05)
        time.sleep(random.uniform(0, 0.1))  # land anywhere in the startup period
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", tport))
        t0 = time.perf_counter()
        lst.listen(128)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if status_code(port, "/startup", timeout=1) == 200:
                return (time.perf_counter() - t0) * 1e3
            time.sleep(0.001)
        raise RuntimeError("/startup not 200 within 5s of the target listening")
    finally:
        if lst is not None:
            lst.close()
        p.stop()


def section_lifecycle(targets, res):
    out = {"exec_to_livez_ms": [], "spawn_to_livez_ms": [], "sigterm_exit_ms": [],
           "sigterm_rc": [], "ready_to_startup_ms": []}
    rounds = max(ROUNDS, 5)
    for i in range(rounds):
        log("lifecycle: exec to /livez %d/%d" % (i + 1, rounds))
        from_exec, from_spawn = exec_to_livez(targets)
        out["exec_to_livez_ms"].append(from_exec)
        out["spawn_to_livez_ms"].append(from_spawn)
    for i in range(ROUNDS):
        log("lifecycle: SIGTERM with %d hung attempts %d/%d" % (HUNG_N, i + 1, ROUNDS))
        ms, rc = sigterm_hung()
        out["sigterm_exit_ms"].append(ms)
        out["sigterm_rc"].append(rc)
    for i in range(rounds):
        log("lifecycle: target ready to /startup %d/%d" % (i + 1, rounds))
        out["ready_to_startup_ms"].append(ready_to_startup())
    res["lifecycle"] = out


# ---------------------------------------------------------------- memory


def section_memory(targets, res):
    out = []
    for n in MEM_N:
        for kind in ("http", "tcp"):
            log("memory: %d %s probes at 10s" % (n, kind))
            probes = (http_probes(targets.base, n, "/mem/") if kind == "http"
                      else tcp_probes(targets.base, n))
            cfg, port = probed_config("mem-%s-%d" % (kind, n), probes, period="10s")
            p = start_probed("mem-probed", cfg, port)
            try:
                # No /status polling while sampling: rendering 10,000 probes as JSON
                # would itself grow the heap. Every probe's first attempt starts at once
                # and ends within its 1 s timeout; sample over the following period.
                time.sleep(2)
                peak = {"rss": 0, "private": 0, "anon": 0}
                end = time.monotonic() + 11  # one more period, sampled each second
                last = None
                while time.monotonic() < end:
                    last = p.mem()
                    for k in peak:
                        peak[k] = max(peak[k], last[k])
                    time.sleep(1)
                st = probed_status(port)  # afterwards: did every probe run?
                done = sum(1 for x in st["probes"] if x.get("attempts", 0) >= 1) if st else None
                out.append({"kind": kind, "n": n, "completed_first_attempt": done,
                            "private_peak": peak["private"], "anon_peak": peak["anon"],
                            "rss_peak": peak["rss"], "private_last": last["private"],
                            "anon_last": last["anon"], "rss_last": last["rss"]})
            finally:
                p.stop()
    res["memory"] = out


# ---------------------------------------------------------------- fairness


FAIR_SECONDS = float(os.environ.get("BENCH_FAIR_SECONDS", "10"))
# BENCH_FAIR_PIN=1 (and 2+ CPUs): probed alone on CPU 0, the peers, their exec commands
# and nginx on the others, so that lateness shows the loop, not CPU contention
FAIR_PIN = os.environ.get("BENCH_FAIR_PIN", "") not in ("", "0") and (os.cpu_count() or 1) >= 2


def pin_session(sid, cpus):
    """Every thread of every process of session sid onto cpus."""
    for pid in session_pids(sid):
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass
HOSTILE = os.path.join(ROOT, BUILD, "tests", "hostile")
HOSTILE_GRPC = os.path.join(ROOT, "tests", "tools", "hostile_grpc.py")


def start_peer(name, argv):
    """A hostile peer; returns (Proc, port) once it printed "PORT <n>"."""
    out = os.path.join(TMP, name + ".out")
    p = Proc(name, argv, cgroup=False, stdout=out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(out) as f:
            m = re.search(r"^PORT (\d+)$", f.read(), re.M)
        if m:
            return p, int(m.group(1))
        if not p.alive():
            break
        time.sleep(0.02)
    raise RuntimeError("%s printed no port, see %s" % (name, out))


def request_times(targets, prefix, t0, t1, offset):
    times = []
    pb = prefix.encode()
    with open(targets.log, "rb") as f:
        f.seek(offset)
        for line in f:
            ts, _, uri = line.partition(b" ")
            if uri.startswith(pb):
                t = float(ts)
                if t0 <= t < t1:
                    times.append(t)
    return sorted(times)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else None


def fairness_one(targets, label, kinds):
    """kinds: hostile probe kinds to run beside the fast probe (ws, http, exec, grpc)."""
    peers, probes = [], []
    prefix = "/fair-%s/" % label
    probes.append({"name": "fast", "type": "http", "period": "100ms", "timeout": "1s",
                   "url": "http://127.0.0.1:%d%s" % (targets.base, prefix)})
    try:
        for k in kinds:
            i = len(probes)
            if k == "ws":  # data frames forever, 1 GiB allowed: read until the timeout
                p, port = start_peer("fair-ws%d" % i, [HOSTILE, "--port", "0", "ws-stream"])
                probes.append({"name": "ws%d" % i, "type": "websocket", "max_skip": 1 << 30,
                               "url": "ws://127.0.0.1:%d/" % port})
            elif k == "http":  # a body forever, 64 MiB read per attempt
                p, port = start_peer("fair-http%d" % i, [HOSTILE, "--port", "0", "body-forever"])
                probes.append({"name": "http%d" % i, "type": "http", "max_body": 64 << 20,
                               "expect_body": "never-there", "url": "http://127.0.0.1:%d/" % port})
            elif k == "grpc":
                p, port = start_peer("fair-grpc%d" % i, ["/usr/bin/python3", HOSTILE_GRPC, "--port", "0",
                                                        "huge-prefix"])
                probes.append({"name": "grpc%d" % i, "type": "grpc", "address": "127.0.0.1:%d" % port})
            else:
                p = None
                probes.append({"name": "exec%d" % i, "type": "exec", "command": ["/usr/bin/yes", "flood"]})
                if FAIR_PIN:
                    probes[-1]["command"][:0] = ["/usr/bin/taskset", "-c", "1-%d" % (os.cpu_count() - 1)]
            if p:
                peers.append(p)
        for pr in probes[1:]:
            pr.update({"period": "100ms", "timeout": "1s"})
        cfg, port = probed_config("fair-%s" % label, probes)
        main = start_probed("fair-probed", cfg, port)
        if FAIR_PIN:
            others = set(range(1, os.cpu_count()))
            pin_session(main.pid, {0})
            for p in peers + [targets.proc]:
                pin_session(p.pid, others)
        try:
            time.sleep(WARMUP)
            off = targets.offset()
            win, t0w, t1w, dur = measure_window([main], FAIR_SECONDS, sample_mem=False)
            st = probed_status(port) or {"probes": []}
        finally:
            main.stop()
    finally:
        for p in peers:
            p.stop()
    times = request_times(targets, prefix, t0w, t1w, off)
    late = [max(0.0, (b - a) - 0.1) * 1000 for a, b in zip(times, times[1:])]
    w = win[0]
    cpu = w["cpu_us_cgroup"] if w["cpu_us_cgroup"] is not None else w["cpu_us_proc"]
    r = {"label": label, "beside": kinds, "seconds": round(dur, 3), "requests": len(times),
         "expected": round(dur / 0.1), "late_p50_ms": pct(late, 0.5), "late_p99_ms": pct(late, 0.99),
         "late_max_ms": max(late) if late else None, "cpu_percent": 100.0 * cpu / (dur * 1e6),
         "cancellations": sum(x.get("cancellations", 0) for x in st["probes"]),
         "outcomes": {x["name"]: (x.get("last_outcome"), x.get("last_error")) for x in st["probes"]}}
    log("  %s: %d/%d requests, lateness p50 %s p99 %s max %s ms, probed CPU %.1f%%, %d cancelled"
        % (label, r["requests"], r["expected"], fmt(r["late_p50_ms"]), fmt(r["late_p99_ms"]),
           fmt(r["late_max_ms"]), r["cpu_percent"], r["cancellations"]))
    return r


def section_fairness(targets, res):
    if not os.access(HOSTILE, os.X_OK):
        raise RuntimeError("%s not built (make BUILD=%s)" % (HOSTILE, BUILD))
    out = []
    cases = [("alone", []), ("websocket", ["ws", "ws"]), ("http", ["http", "http"]),
             ("exec", ["exec", "exec"]), ("grpc", ["grpc"]),
             ("all", ["ws", "ws", "http", "http", "exec", "exec", "grpc"])]
    for label, kinds in cases:
        log("fairness: 100ms probe beside %s" % (", ".join(kinds) or "nothing"))
        out.append(fairness_one(targets, label, kinds))
    res["fairness"] = out


# ---------------------------------------------------------------- abuse


def abuse_module():
    """tests/bench/abuse.py, handed this module (run as __main__: its TMP, processes)."""
    sys.path.insert(0, HERE)
    import abuse
    abuse.B = sys.modules[__name__]
    return abuse


def section_abuse(targets, res):
    abuse_module().section_abuse(targets, res)


# ---------------------------------------------------------------- throttled


def section_throttled(targets, res):
    sys.path.insert(0, HERE)
    import throttled
    log("throttled: windows of %.1f s every %.1f s of freeze" % (throttled.WINDOW_S, throttled.GAP_S))
    res["throttled"] = throttled.run(PROBED)


# ---------------------------------------------------------------- report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def mib(b):
    return "-" if b is None else "%.2f" % (b / MIB)


def report(res):
    L = []
    L.append("# probed benchmarks")
    L.append("")
    m = res["machine"]
    L.append("Run %s on %s (%d CPUs, kernel %s, load average at start %s). probed %s; %s."
             % (m["date"], m["host"], m["cpus"], m["kernel"], m["loadavg"], m["probed"],
                ", ".join(m["versions"])))
    L.append("Generated by `make bench` (tests/bench/bench.py); raw numbers in results.json.")
    L.append("")
    if "fleet" in res:
        L.append("## Fleet: N http targets, 1 s period, %d s window (after %.0f s warm-up)"
                 % (SECONDS, WARMUP))
        L.append("")
        src = ("per-peer cpuacct cgroup (exact, includes exited children and threads)"
               if CG_ROOT else "/proc/PID/stat utime+stime+cutime+cstime summed over the "
               "peer's session (10 ms ticks)")
        L.append("CPU source: %s. Probes performed are counted in the target nginx's access "
                 "log inside the window; expected = N x window seconds. RSS is the peak of "
                 "samples taken every %.0f s, summed over the peer's processes (private = "
                 "Private_Clean + Private_Dirty of smaps_rollup). blackbox-exporter's scraper "
                 "(tests/bench/scraper.py, keep-alive, once per second per target) is excluded "
                 "from its µs/probe and shown apart. The curl loop is tests/bench/curl_loop.sh: "
                 "%d shell loops sharing the targets, each running one `curl` per target in "
                 "turn then `sleep 1`; its CPU includes the shells, curl and sleep."
                 % (src, max(1.0, SECONDS / 6.0), CURL_PARALLEL))
        L.append("")
        L.append("| N | peer | probes performed | expected | kept period | CPU % of a core "
                 "| CPU µs/probe | private RSS MiB | total RSS MiB | notes |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in res["fleet"]:
            if "error" in r:
                L.append("| %d | %s | - | - | - | - | - | - | - | error: %s |"
                         % (r["n"], r["peer"], r["error"].replace("|", "/")))
                continue
            note = []
            if r["peer"] == "blackbox":
                note.append("scraper (excluded): %s µs/probe"
                            % fmt(r.get("scraper_cpu_us_per_probe")))
            if r["peer"] == "curl":
                note.append("%d processes" % r["processes"])
            L.append("| %d | %s | %d | %d | %.0f%% | %.1f | %s | %s | %s | %s |"
                     % (r["n"], r["peer"], r["performed"], r["expected"], 100 * r["kept"],
                        r["cpu_percent"], fmt(r["cpu_us_per_probe"]), mib(r["private_rss"]),
                        mib(r["rss"]), "; ".join(note)))
        L.append("")
    if "names" in res:
        L.append("## Names: N http targets by host name, 1 s period, %d s window" % SECONDS)
        L.append("")
        L.append("%d names served by dnsmasq on loopback (TTL %d s, its own cache off), N/%d "
                 "targets each. probed-names: probed with the config's `resolver` on it (c-ares "
                 "on the loop, answers cached for their TTL); probed: the same targets by literal "
                 "address; haproxy-names: HAProxy's checks with a `resolvers` section on the same "
                 "dnsmasq (`hold valid %ds`, `timeout resolve 1s`). CPU as in the fleet table; "
                 "DNS queries counted in dnsmasq's query log inside the window."
                 % (NAMES, NAMES_TTL, NAMES, NAMES_TTL))
        L.append("")
        L.append("| N | peer | probes performed | expected | kept period | CPU % of a core "
                 "| CPU µs/probe | DNS queries/s | private RSS MiB |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in res["names"]:
            if "error" in r:
                L.append("| %d | %s | - | - | - | - | - | - | error: %s |"
                         % (r["n"], r["peer"], r["error"].replace("|", "/")))
                continue
            L.append("| %d | %s | %d | %d | %.0f%% | %.1f | %s | %s | %s |"
                     % (r["n"], r["peer"], r["performed"], r["expected"], 100 * r["kept"],
                        r["cpu_percent"], fmt(r["cpu_us_per_probe"]), fmt(r.get("dns_queries_per_s")),
                        mib(r["private_rss"])))
        L.append("")
    if "status" in res:
        s = res["status"]
        L.append("## Status server: `%s` on /livez, %d rounds alternating, medians"
                 % (s["wrk"], s["rounds"]))
        L.append("")
        L.append("| target | background | req/s (median) | p99 ms (median) | req/s per round "
                 "| errors | probes/s during run |")
        L.append("|---|---|---:|---:|---|---:|---:|")
        groups = {}
        for r in s["runs"]:
            groups.setdefault((r["target"], r["background"]), []).append(r)
        for (t, bg), rs in groups.items():
            pps = med([r.get("probes_per_s") for r in rs])
            L.append("| %s | %s | %.0f | %.2f | %s | %d | %s |"
                     % (t, bg, med([r["rps"] for r in rs]), med([r["p99_ms"] for r in rs]),
                        ", ".join("%.0f" % r["rps"] for r in rs),
                        sum(r["errors"] for r in rs), fmt(pps, "%.0f")))
        L.append("")
    if "grpc" in res:
        g = res["grpc"]
        L.append("## gRPC health on the status port: `%s` beside `%s` on /livez, same probed, "
                 "%d rounds alternating, medians" % (g["h2load"], g["wrk"], g["rounds"]))
        L.append("")
        L.append("| client | req/s (median) | p99 ms (median) | req/s per round | errors |")
        L.append("|---|---:|---:|---|---:|")
        groups = {}
        for r in g["runs"]:
            groups.setdefault(r["target"], []).append(r)
        for t, rs in groups.items():
            L.append("| %s | %.0f | %s | %s | %d |"
                     % (t, med([r["rps"] for r in rs]), fmt(med([r["p99_ms"] for r in rs]), "%.2f"),
                        ", ".join("%.0f" % r["rps"] for r in rs), sum(r["errors"] for r in rs)))
        L.append("")
    if "lifecycle" in res:
        lc = res["lifecycle"]
        L.append("## Lifecycle")
        L.append("")
        L.append("| measure | median ms | min | max | runs | target |")
        L.append("|---|---:|---:|---:|---:|---|")
        rows = (("exec to first /livez 200 (10 http probes)", "exec_to_livez_ms", "≤ 20 ms"),
                ("the same from the harness's Popen call (adds Python's fork)",
                 "spawn_to_livez_ms", ""),
                ("SIGTERM to exit, %d hung http attempts, drain 0" % HUNG_N, "sigterm_exit_ms",
                 "≤ 100 ms"),
                ("target listening to /startup 200 (tcp, startup_period 100ms, polled each 1 ms)",
                 "ready_to_startup_ms", "≤ 110 ms"))
        for label, k, spec in rows:
            xs = lc.get(k, [])
            L.append("| %s | %s | %s | %s | %d | %s |"
                     % (label, fmt(med(xs)), fmt(min(xs) if xs else None),
                        fmt(max(xs) if xs else None), len(xs), spec))
        L.append("")
        L.append("SIGTERM exit codes: %s." % ", ".join(str(x) for x in lc["sigterm_rc"]))
        L.append("")
    if "memory" in res:
        L.append("## Memory: probed idle, probes at a 10 s period against nginx")
        L.append("")
        L.append("Sampled each second for 11 s starting 2 s after /livez answers. The target is "
                 "\"private (anonymous) RSS\": the check uses Anonymous (smaps_rollup), the memory "
                 "probed itself allocated. Private (Private_Clean + Private_Dirty) is shown beside "
                 "it but depends on what else runs: a library page counts as private only while no "
                 "other process maps it.")
        L.append("")
        L.append("| probes | private RSS MiB (peak) | anonymous MiB (peak) | total RSS MiB (peak) "
                 "| private MiB (last) | probes that ran | target (anonymous) |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        for r in res["memory"]:
            L.append("| %d %s | %s | %s | %s | %s | %s | %s |"
                     % (r["n"], r["kind"], mib(r["private_peak"]), mib(r["anon_peak"]),
                        mib(r["rss_peak"]), mib(r["private_last"]),
                        fmt(r["completed_first_attempt"], "%d"),
                        "≤ 2 MiB" if r["n"] <= 10 else "≤ 16 MiB" if r["n"] <= 10000 else ""))
        L.append("")
    if "abuse" in res:
        L += abuse_module().report_abuse(res)
    if "throttled" in res:
        sys.path.insert(0, HERE)
        import throttled
        L.append("## Throttled: probed running only in short windows (request-based CPU)")
        L.append("")
        L += throttled.report(res["throttled"])
        L.append("")
    if "fairness" in res:
        L.append("## Fairness: a 100 ms http probe beside peers streaming as fast as probed reads")
        L.append("")
        L.append("Lateness: gaps between its requests in nginx's log, less 100 ms "
                 "(log resolution 1 ms), over %g s." % FAIR_SECONDS)
        L.append("")
        L.append("| beside | requests / expected | lateness p50 ms | p99 ms | max ms "
                 "| probed CPU % | cancelled |")
        L.append("|---|---|---|---|---|---|---|")
        for r in res["fairness"]:
            L.append("| %s | %d / %d | %s | %s | %s | %.1f | %d |"
                     % (", ".join(r["beside"]) or "nothing", r["requests"], r["expected"],
                        fmt(r["late_p50_ms"]), fmt(r["late_p99_ms"]), fmt(r["late_max_ms"]),
                        r["cpu_percent"], r["cancellations"]))
        L.append("")
    if "fairness" in res and FAIR_PIN:
        L.append("Pinned (BENCH_FAIR_PIN=1): probed alone on CPU 0; peers, exec commands and "
                 "nginx on the others.")
        L.append("")
    L.append("## Checks of the targets (README, \"Benchmarks\")")
    L.append("")
    for line in verdicts(res):
        L.append("- " + line)
    L.append("")
    if res.get("profile"):
        L.append("## perf profile of probed, 1,000 targets (self time, top symbols)")
        L.append("")
        L.append("```")
        L.append(res["profile"])
        L.append("```")
        L.append("")
    return "\n".join(L)


def verdicts(res):
    out = []
    if "fleet" in res:
        for n in FLEET_N:
            rows = {r["peer"]: r for r in res["fleet"] if r["n"] == n and "error" not in r}
            pr = rows.get("probed")
            if not pr or pr["cpu_us_per_probe"] is None:
                continue
            others = [r for p, r in rows.items() if p != "probed" and r["cpu_us_per_probe"]]
            worse = [r["peer"] for r in others if r["cpu_us_per_probe"] <= pr["cpu_us_per_probe"]]
            ratios = ", ".join("%s %.2fx" % (r["peer"], r["cpu_us_per_probe"] /
                                             pr["cpu_us_per_probe"]) for r in others)
            ok = not worse and pr["kept"] >= 0.95
            out.append("%s CPU per probe, N=%d: probed %.1f µs, kept %.0f%% of its period; "
                       "peers' µs/probe relative to probed: %s%s"
                       % ("PASS" if ok else "FAIL", n, pr["cpu_us_per_probe"], 100 * pr["kept"],
                          ratios or "none",
                          "" if not worse else " (cheaper or equal: %s)" % ", ".join(worse)))
    if "names" in res:
        rows = {(r["peer"], r["n"]): r for r in res["names"] if "error" not in r}
        for n in sorted({r["n"] for r in res["names"]}):
            pr, ha = rows.get(("probed-names", n)), rows.get(("haproxy-names", n))
            if not pr or not ha or not pr["cpu_us_per_probe"] or not ha["cpu_us_per_probe"]:
                continue
            ok = pr["cpu_us_per_probe"] < ha["cpu_us_per_probe"] and pr["kept"] >= 0.95
            out.append("%s names, N=%d: probed %.1f µs/probe by host name (kept %.0f%%) vs HAProxy's "
                       "checks %.1f µs/probe (%.2fx)"
                       % ("PASS" if ok else "FAIL", n, pr["cpu_us_per_probe"], 100 * pr["kept"],
                          ha["cpu_us_per_probe"], ha["cpu_us_per_probe"] / pr["cpu_us_per_probe"]))
    if "throttled" in res:
        t = res["throttled"]
        hang = t["request_hang"]
        bound = 1.0 * 3 + 2 * 1.0 + 2 * t["window_s"]  # timeout x failure_threshold + periods, window granularity
        ok = hang["awake_s"] is not None and hang["wall_s"] is not None and hang["awake_s"] <= bound
        out.append("%s throttled hang reported after %s s awake (%s s wall), bound ~%.1f s awake"
                   % ("PASS" if ok else "FAIL", fmt(hang["awake_s"]), fmt(hang["wall_s"]), bound))
        ff = t["slow"]["false_failures"]
        out.append("%s throttled slow app: %d false failures over %d windows"
                   % ("PASS" if ff == 0 else "FAIL", ff, t["slow"]["windows"]))
    if "status" in res:
        runs = res["status"]["runs"]
        for bg in ("none", "probed probing 1000 targets"):
            pr = [r for r in runs if r["background"] == bg and r["target"] != "nginx"]
            ng = [r for r in runs if r["background"] == bg and r["target"] == "nginx"]
            if not pr or not ng:
                continue
            prps, nrps = med([r["rps"] for r in pr]), med([r["rps"] for r in ng])
            pp99, np99 = med([r["p99_ms"] for r in pr]), med([r["p99_ms"] for r in ng])
            ok = prps >= nrps and pp99 <= np99
            out.append("%s /livez (%s): probed %.0f req/s p99 %.2f ms vs nginx %.0f req/s "
                       "p99 %.2f ms (req/s ratio %.2f)"
                       % ("PASS" if ok else "FAIL", pr[0]["target"], prps, pp99, nrps, np99,
                          prps / nrps if nrps else 0))
    if "grpc" in res:
        runs = res["grpc"]["runs"]
        livez = med([r["rps"] for r in runs if r["target"].startswith("/livez")])
        check = med([r["rps"] for r in runs if r["target"] == "Check (h2load -m1)"])
        errs = sum(r["errors"] for r in runs)
        ok = livez and check >= livez / 2 and errs == 0
        out.append("%s gRPC Check %.0f req/s (h2load -m1) vs /livez %.0f req/s: ratio %.2f "
                   "(goal >= 0.5), %d errors"
                   % ("PASS" if ok else "FAIL", check, livez, check / livez if livez else 0, errs))
    if "lifecycle" in res:
        lc = res["lifecycle"]
        for k, lim, label in (("exec_to_livez_ms", 20, "exec to /livez"),
                              ("sigterm_exit_ms", 100, "SIGTERM to exit"),
                              ("ready_to_startup_ms", 110, "target ready to /startup")):
            xs = lc[k]
            if xs:
                out.append("%s %s: max %.1f ms, median %.1f ms (limit %d ms)"
                           % ("PASS" if max(xs) <= lim else "FAIL", label, max(xs), med(xs), lim))
    if "memory" in res:
        for r in res["memory"]:
            lim = 2 * MIB if r["n"] <= 10 else 16 * MIB
            out.append("%s private (anonymous) RSS with %d %s probes: %.2f MiB (Private_Clean + "
                       "Private_Dirty %.2f MiB; limit %.0f MiB)"
                       % ("PASS" if r["anon_peak"] <= lim else "FAIL", r["n"], r["kind"],
                          r["anon_peak"] / MIB, r["private_peak"] / MIB, lim / MIB))
    return out


def machine():
    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            line = (r.stdout + r.stderr).strip().splitlines()[0]
            return re.split(r" Copyright| \(branch| \(x86", line)[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"
    pv = ver([PROBED, "--version"]).replace("probed ", "")
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(), "cpus": os.cpu_count(), "kernel": os.uname().release,
            "loadavg": open("/proc/loadavg").read().split()[0], "probed": pv,
            "versions": [ver(["nginx", "-v"]), ver(["haproxy", "-v"]),
                         ver(["prometheus-blackbox-exporter", "--version"]),
                         ver(["wrk", "-v"]), ver(["curl", "--version"])]}


# ---------------------------------------------------------------- main


def main():
    global TMP
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if not os.access(PROBED, os.X_OK):
        log("%s not built (run make first, or set BUILD=...)" % PROBED)
        return 2
    need = {"fleet": ("haproxy", "prometheus-blackbox-exporter", "curl"), "status": ("wrk",),
            "names": ("haproxy", "dnsmasq"),
            "grpc": ("wrk", "h2load")}
    tools = ["nginx"] + [t for s in SECTIONS for t in need.get(s, ())]
    for tool in tools:
        if shutil.which(tool) is None:
            log("%s missing (tests/bench/bench.sh installs it)" % tool)
            return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < max(MEM_N + FLEET_N) + 1000:
        log("warning: open-file limit %d is low for %d probes" % (nofile, max(MEM_N + FLEET_N)))
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)  # keep the harness's windows on time
    except OSError:
        pass
    TMP = tempfile.mkdtemp(prefix="probed-bench-")
    os.chmod(TMP, 0o755)
    res = {"config": {"seconds": SECONDS, "fleet_n": FLEET_N, "rounds": ROUNDS,
                      "wrk_seconds": WRK_SECONDS, "sections": SECTIONS, "peers": PEERS,
                      "warmup": WARMUP, "nofile": nofile}}
    rc = 0
    try:
        cgroup_setup()
        res["config"]["cpu_source"] = "cgroup-%s" % CG_ROOT[0] if CG_ROOT else "proc"
        res["machine"] = machine()
        base = PORT_BASE
        for _ in range(10):
            if port_block_free(base, TARGET_PORTS):
                break
            base += TARGET_PORTS
        else:
            raise RuntimeError("no free block of %d ports from %d" % (TARGET_PORTS, PORT_BASE))
        log("targets: nginx on 127.0.0.1:%d-%d; temp dir %s" % (base, base + TARGET_PORTS - 1,
                                                                  TMP))
        targets = Targets(base, TARGET_PORTS)
        for name, fn in (("fleet", section_fleet), ("names", section_names), ("status", section_status), ("grpc", section_grpc),
                         ("lifecycle", section_lifecycle), ("memory", section_memory),
                         ("fairness", section_fairness), ("abuse", section_abuse),
                         ("throttled", section_throttled)):
            if name in SECTIONS:
                fn(targets, res)
        for r in res.get("fleet", []):
            if r.get("profile"):
                res["profile"] = r["profile"]
    except KeyboardInterrupt as e:
        log("interrupted (%s); cleaning up" % e)
        rc = 130
    except Exception as e:
        log("failed: %s: %s" % (type(e).__name__, e))
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
    if rc == 0:
        md = report(res)
        with open(os.path.join(OUT_DIR, "results.md"), "w") as f:
            f.write(md + "\n")
        with open(os.path.join(OUT_DIR, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        print(md)
    return rc


if __name__ == "__main__":
    sys.exit(main())
