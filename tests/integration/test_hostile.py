"""Hostile targets (issue 6, hardening): every probe kind against a peer that misbehaves
on purpose. Each attempt must end as `failure` or `timeout` within the probe's timeout
(plus a margin), probing must keep its period, the daemon's private memory must stay
bounded, and exec must leave no process behind.

Peers: tests/tools/hostile.c ($TOOLS/hostile MODE: HTTP/1.1 and WebSocket misbehaviour),
tests/tools/hostile_grpc.py (an h2c server built on python3-h2 that sends a gRPC reply
with a 4 GiB length prefix, or no trailers, or nothing), and /usr/bin/yes and a
/bin/sh that ignores SIGTERM for exec.

Figures (attempt durations, RSS) are printed as "INFO ..." lines. A kind that is not
linked into the daemon fails its test with a clear message (it is not skipped)."""

import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import curl, eq, run_probed, start_daemon, tmpdir, wait_until  # noqa: E402

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
GRPC_PEER = os.path.join(HERE, "..", "tools", "hostile_grpc.py")
S = harness.SCALE
MIB = 1 << 20

TIMEOUT_MS = 600                    # every hostile probe's timeout
MARGIN_MS = int(400 * S)            # how late an attempt may end past its timeout
RSS_GROWTH_MAX = 8 * MIB            # private RSS growth allowed over the memory run


def info(fmt, *args):
    print("INFO " + (fmt % args), flush=True)


# ---------------------------------------------------------------- peers

class Peer:
    """A hostile peer process that prints "PORT <n>" once bound; stopped at teardown."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        harness._targets.append(self)  # stopped by the harness's teardown
        r, _, _ = select.select([self.proc.stdout], [], [], 10 * S)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("PORT "):
            self.stop()
            raise AssertionError("%s did not print its port (got %r)" % (cmd, line))
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def hostile(mode):
    return Peer([os.path.join(harness.TOOLS, "hostile"), "--port", "0", mode])


def hostile_grpc(mode):
    try:
        import h2  # noqa: F401
    except ImportError:
        raise AssertionError("python3-h2 is not installed (apt-get install python3-h2; "
                             "deploy/deps.sh should list it)")
    return Peer([PY, GRPC_PEER, "--port", "0", mode])


# ---------------------------------------------------------------- helpers

def require_kinds(probes):
    """Fails clearly when the daemon does not know a probe type yet."""
    d = tmpdir()
    path = os.path.join(d, "check.json")
    with open(path, "w") as f:
        json.dump({"probes": probes}, f)
    r = run_probed(["--check-config", "-c", path])
    if r.rc != 0:
        m = re.search(r'"(\w+)" is not a known type', r.stderr)
        if m:
            raise AssertionError("probe kind %r is not linked into %s yet (--check-config: %s)"
                                 % (m.group(1), harness.PROBED, r.stderr.strip()))
        raise AssertionError("hostile config rejected: %s" % r.stderr.strip())


def probe(name, kind, period="300ms", timeout=None, **kw):
    # Not in the startup scope: a probe that never succeeds would keep startup_period
    # (100ms) instead of period.
    p = {"name": name, "type": kind, "period": period, "scopes": ["liveness", "readiness"],
         "timeout": timeout or "%dms" % TIMEOUT_MS, "failure_threshold": 1}
    p.update(kw)
    return p


def status(d):
    r = curl(d.url("/status"), timeout=5 * S)
    if r[0] != 200:
        raise AssertionError("/status answered %r (%s)" % (r[0], r.error))
    return json.loads(r[1])


def private_rss(pid):
    """Private (Private_Clean + Private_Dirty) RSS in bytes, from smaps_rollup."""
    total = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


class Watch:
    """Polls /status and records every completed attempt per probe as
    (outcome, duration_ms, error), seen through the attempts counter."""

    def __init__(self, d, names):
        self.d = d
        self.seen = {n: 0 for n in names}
        self.attempts = {n: [] for n in names}
        self.missed = {n: 0 for n in names}
        self.last = {}

    def poll(self):
        st = status(self.d)
        for p in st["probes"]:
            n = p["name"]
            if n not in self.seen:
                continue
            self.last[n] = p
            done = p["attempts"]
            if done > self.seen[n]:
                # Attempts finished between two polls are only visible through the
                # counters; the last one is recorded with its duration.
                self.missed[n] += done - self.seen[n] - 1
                self.seen[n] = done
                self.attempts[n].append((p["last_outcome"], p["last_duration_ms"], p["last_error"]))
        return st

    def wait_attempts(self, k, timeout):
        def enough():
            self.poll()
            return all(self.seen[n] >= k for n in self.seen)
        wait_until(enough, timeout=timeout, interval=0.05,
                   msg="%d completed attempts of every probe (have %r)" % (k, self.seen))


def check_attempts(w, allowed=("failure", "timeout"), timeout_ms=TIMEOUT_MS):
    for n, recs in w.attempts.items():
        p = w.last[n]
        durs = [r[1] for r in recs]
        info("%s: %d attempts, outcomes %s, durations %s ms, last_error %r", n, p["attempts"],
             sorted({r[0] for r in recs}), durs, p["last_error"])
        for outcome, dur, err in recs:
            if outcome not in allowed:
                raise AssertionError("%s: outcome %r (%r), expected one of %s"
                                     % (n, outcome, err, allowed))
            if dur is None or dur > timeout_ms + MARGIN_MS:
                raise AssertionError("%s: an attempt took %r ms, timeout %d ms + margin %d ms"
                                     % (n, dur, timeout_ms, MARGIN_MS))
        if p["successes"] and "success" not in allowed:
            raise AssertionError("%s: %d successes against a hostile peer" % (n, p["successes"]))


def run_group(probes, k=3, allowed=("failure", "timeout")):
    """One daemon with every probe of probes; waits for k attempts each, checks them,
    and checks the period held: k attempts within k * (period + timeout) + slack."""
    require_kinds(probes)
    d = start_daemon({"probes": probes})
    t0 = time.monotonic()
    w = Watch(d, [p["name"] for p in probes])
    # period 300ms, timeout 600ms: at most ~0.9 s per attempt, plus startup slack
    w.wait_attempts(k, timeout=k * 0.9 + 3)
    info("%d attempts of %d probes took %.2fs", k, len(probes), time.monotonic() - t0)
    check_attempts(w, allowed)
    return d, w


# ---------------------------------------------------------------- http

def test_http_hostile():
    peers = {m: hostile(m) for m in ("body-forever", "body-huge", "headers-forever", "trickle",
                                     "reset", "silent")}
    probes = [probe("hdr", "http", url="http://127.0.0.1:%d/" % peers["headers-forever"].port),
              probe("trickle", "http", url="http://127.0.0.1:%d/" % peers["trickle"].port),
              probe("reset", "http", url="http://127.0.0.1:%d/" % peers["reset"].port),
              probe("silent", "http", url="http://127.0.0.1:%d/" % peers["silent"].port),
              # an endless body is only read up to max_body (README "Probe kinds"): the verdict then
              # rests on expect_body, which never comes
              probe("forever", "http", url="http://127.0.0.1:%d/" % peers["body-forever"].port,
                    expect_body="never-there"),
              probe("huge", "http", url="http://127.0.0.1:%d/" % peers["body-huge"].port,
                    expect_body="never-there")]
    d, w = run_group(probes)
    eq(w.last["reset"]["last_outcome"], "failure", "reset mid-response")
    eq(w.last["trickle"]["last_outcome"], "timeout", "one byte a second")
    eq(w.last["silent"]["last_outcome"], "timeout", "never answers")


def test_http_endless_body_status_only():
    """Without expect_body a 200 with an endless body is a success (README "Probe kinds": more than
    max_body is not read and not an error), decided without waiting for the timeout."""
    peers = [hostile("body-forever"), hostile("body-huge")]
    probes = [probe("forever", "http", url="http://127.0.0.1:%d/" % peers[0].port),
              probe("huge", "http", url="http://127.0.0.1:%d/" % peers[1].port)]
    d, w = run_group(probes, allowed=("success",))
    for n, recs in w.attempts.items():
        slowest = max(r[1] for r in recs)
        if slowest >= TIMEOUT_MS:
            raise AssertionError("%s: an endless body was read until the timeout (%d ms)"
                                 % (n, slowest))


# ---------------------------------------------------------------- websocket

def test_websocket_hostile():
    peers = {m: hostile(m) for m in ("ws-garbage", "ws-huge-frame", "ws-101-trickle",
                                     "headers-forever", "body-forever", "silent")}
    probes = [probe("garbage", "websocket", url="ws://127.0.0.1:%d/ws" % peers["ws-garbage"].port),
              probe("hugeframe", "websocket", url="ws://127.0.0.1:%d/ws" % peers["ws-huge-frame"].port),
              probe("trickle101", "websocket", url="ws://127.0.0.1:%d/ws" % peers["ws-101-trickle"].port),
              probe("hdr", "websocket", url="ws://127.0.0.1:%d/ws" % peers["headers-forever"].port),
              probe("body200", "websocket", url="ws://127.0.0.1:%d/ws" % peers["body-forever"].port),
              probe("silent", "websocket", url="ws://127.0.0.1:%d/ws" % peers["silent"].port)]
    d, w = run_group(probes)
    eq(w.last["body200"]["last_outcome"], "failure", "200 instead of 101")
    eq(w.last["trickle101"]["last_outcome"], "timeout", "101 one byte a second")


# ---------------------------------------------------------------- grpc

def test_grpc_hostile():
    peers = {m: hostile_grpc(m) for m in ("huge-prefix", "huge-prefix-trailers", "no-trailers",
                                          "silent")}
    probes = [probe("huge", "grpc", address="127.0.0.1:%d" % peers["huge-prefix"].port),
              probe("hugetrailers", "grpc", address="127.0.0.1:%d" % peers["huge-prefix-trailers"].port),
              probe("notrailers", "grpc", address="127.0.0.1:%d" % peers["no-trailers"].port),
              probe("silent", "grpc", address="127.0.0.1:%d" % peers["silent"].port),
              probe("http1", "grpc", address="127.0.0.1:%d" % hostile("body-forever").port)]
    d, w = run_group(probes)
    eq(w.last["hugetrailers"]["last_outcome"], "failure", "4 GiB length prefix with trailers")
    eq(w.last["silent"]["last_outcome"], "timeout", "h2 server that never answers")


# ---------------------------------------------------------------- exec

def procs_with(marker):
    """[(pid, state)] of processes whose command line contains marker."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd:
            out.append((int(pid), state))
    return out


def exec_one(command, marker, timeout="500ms"):
    """One exec attempt (period 1h), then no process with marker may remain."""
    probes = [probe("x", "exec", period="1h", timeout=timeout, command=command)]
    require_kinds(probes)
    d = start_daemon({"probes": probes})
    w = Watch(d, ["x"])
    w.wait_attempts(1, timeout=5)
    check_attempts(w, timeout_ms=500)
    t0 = time.monotonic()
    wait_until(lambda: not procs_with(marker), timeout=3, interval=0.05,
               msg="no process left with %s (have %r)" % (marker, procs_with(marker)))
    info("exec %s: gone %.0f ms after the verdict was visible", marker,
         (time.monotonic() - t0) * 1000)
    return d, w


def test_exec_floods_stdout():
    marker = "hostile-%s" % uuid.uuid4().hex[:12]
    d, w = exec_one(["/usr/bin/yes", marker], marker)
    eq(w.last["x"]["last_outcome"], "timeout", "yes never exits")
    out = w.last["x"]["output"]
    if out is None or len(out.encode()) > 1024 + 64:
        raise AssertionError("output not bounded to EXEC_OUTPUT_MAX: %r bytes"
                             % (None if out is None else len(out.encode())))
    if marker not in out:
        raise AssertionError("output does not hold the child's first bytes: %r" % out[:100])


def test_exec_ignores_sigterm():
    marker = "61.%09d" % (uuid.uuid4().int % 10**9)
    d, w = exec_one(["/bin/sh", "-c", "trap '' TERM; /bin/sleep %s; echo done" % marker], marker)
    eq(w.last["x"]["last_outcome"], "timeout", "sleep 61")


# ---------------------------------------------------------------- memory

def test_memory_bounded():
    """Every hostile peer at once, for a while: private RSS must not keep growing."""
    h = {m: hostile(m) for m in ("body-forever", "body-huge", "headers-forever", "trickle", "reset",
                                 "ws-garbage", "ws-huge-frame")}
    g = hostile_grpc("huge-prefix")
    probes = [probe("h-" + m, "http", period="200ms", url="http://127.0.0.1:%d/" % h[m].port,
                    expect_body="never-there") for m in ("body-forever", "body-huge",
                                                         "headers-forever", "trickle", "reset")]
    probes += [probe("w-" + m, "websocket", period="200ms", url="ws://127.0.0.1:%d/" % h[m].port)
               for m in ("ws-garbage", "ws-huge-frame")]
    probes.append(probe("g-huge", "grpc", period="200ms", address="127.0.0.1:%d" % g.port))
    probes.append(probe("e-yes", "exec", period="200ms", timeout="300ms",
                        command=["/usr/bin/yes", "flood"]))
    require_kinds(probes)
    # ASan keeps freed memory in quarantine (256 MiB by default), which would look like
    # growth; a small quarantine keeps its checks and makes RSS meaningful.
    env = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")}
    d = start_daemon({"probes": probes}, env=env)
    w = Watch(d, [p["name"] for p in probes])
    warm, end = 3.0 * S, 10.0 * S
    t0 = time.monotonic()
    samples = []
    while time.monotonic() - t0 < end:
        samples.append((time.monotonic() - t0, private_rss(d.pid)))
        w.poll()
        time.sleep(0.25)
    base = max(r for t, r in samples if t < warm)
    late = max(r for t, r in samples if t >= warm)
    first = samples[0][1]
    total = sum(w.last[n]["attempts"] for n in w.last)
    info("memory: private RSS first %.2f MiB, max during warm-up %.2f MiB, max after %.2f MiB "
         "(growth %+.2f MiB) over %.1fs, %d attempts", first / MIB, base / MIB, late / MIB,
         (late - base) / MIB, end, total)
    check_attempts(w, timeout_ms=TIMEOUT_MS)
    for n in w.last:
        if w.last[n]["attempts"] < 3:
            raise AssertionError("%s: only %d attempts in %.1fs: probing is delayed"
                                 % (n, w.last[n]["attempts"], end))
    if late - base > RSS_GROWTH_MAX:
        raise AssertionError("private RSS grew by %.2f MiB (limit %.0f MiB): %s"
                             % ((late - base) / MIB, RSS_GROWTH_MAX / MIB,
                                ["%.1fs %.2fMiB" % (t, r / MIB) for t, r in samples]))


# ---------------------------------------------------------------- fairness (issue 10)
#
# A peer streaming as fast as probed reads must not hold the loop: every read handler
# takes at most LOOP_READ_BUDGET bytes per wake-up (README "Design"). A fast tcp probe
# (period 100ms) beside it keeps its schedule, and nothing is cancelled.

FAST_PERIOD = 0.1
FAIR_WINDOW = 3.0 * S
FAIR_MIN_SHARE = 0.8  # of the attempts a 100ms probe makes alone in the window


FAIR_LATE_MAX_MS = 60  # generous: 2 shared cores; a held loop shows hundreds of ms


def counts(d):
    return {p["name"]: p for p in status(d)["probes"]}


def status_quick(d):
    """/status through http.client (no curl process: polled every 20 ms)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5 * S)
    try:
        c.request("GET", "/status")
        return {p["name"]: p for p in json.loads(c.getresponse().read())["probes"]}
    finally:
        c.close()


def rfc3339(s):
    """Seconds since the epoch of "2026-12-06T19:20:01.123Z" (ms kept)."""
    import calendar
    m = re.match(r"^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z$", s)
    if not m:
        raise AssertionError("last_attempt %r is not RFC 3339 UTC" % s)
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or "0"
    return calendar.timegm((y, mo, d, h, mi, se)) + int(frac) / 10 ** len(frac)


def fairness(hostile_probes, settle=1.0):
    """Runs hostile_probes beside a fast tcp probe; returns the last /status probes by
    name. The fast probe must make FAIR_MIN_SHARE of its expected attempts over
    FAIR_WINDOW, succeed every time, and no probe may count a cancellation."""
    t = harness.start_target()
    probes = [probe("fast", "tcp", period="100ms", timeout="1s", address="127.0.0.1:%d" % t.port)]
    probes += hostile_probes
    require_kinds(probes)
    d = start_daemon({"probes": probes})
    names = [p["name"] for p in probes]
    # every hostile probe has ended an attempt: the streams are flowing
    wait_until(lambda: all(counts(d)[n]["attempts"] >= 1 for n in names), timeout=5,
               interval=0.05, msg="one attempt of every probe")
    t_settle = time.monotonic()
    wait_until(lambda: time.monotonic() - t_settle >= settle, timeout=settle + 5, interval=0.05)
    first = counts(d)
    t0 = time.monotonic()
    # The status server's threads answer from snapshots, whatever the loop does: the fast
    # probe's (attempts, last_attempt) seen every 20 ms give the spacing of its attempts
    seen = []

    def sample():
        f = status_quick(d)["fast"]
        if f["last_attempt"] and (not seen or seen[-1][0] != f["attempts"]):
            seen.append((f["attempts"], rfc3339(f["last_attempt"])))
        return time.monotonic() - t0 >= FAIR_WINDOW
    wait_until(sample, timeout=FAIR_WINDOW + 5, interval=0.02)
    last = counts(d)
    span = time.monotonic() - t0
    made = last["fast"]["attempts"] - first["fast"]["attempts"]
    expected = span / FAST_PERIOD
    # per attempt between two sightings (a sighting may miss one: snapshots of counters
    # are published every 100 ms)
    gaps = [(t2 - t1) / (a2 - a1) for (a1, t1), (a2, t2) in zip(seen, seen[1:])]
    late_ms = max(0.0, max(gaps) - FAST_PERIOD) * 1000 if gaps else None
    info("fast probe: %d attempts in %.2fs beside %s (%.0f expected at 100ms); "
         "%d sightings, worst spacing %s ms past the period", made, span,
         [p["name"] for p in hostile_probes], expected, len(seen),
         "-" if late_ms is None else "%.0f" % late_ms)
    if late_ms is None or late_ms > FAIR_LATE_MAX_MS * S:
        raise AssertionError("fast probe attempts %s ms apart beyond the period (limit %d ms): "
                             "a streaming peer held the loop" % (late_ms, FAIR_LATE_MAX_MS * S))
    for n in names:
        p = last[n]
        info("%s: %d attempts, last %s (%r), cancellations %d", n, p["attempts"],
             p["last_outcome"], p["last_error"], p["cancellations"])
        if p["cancellations"]:
            raise AssertionError("%s: %d cancelled attempts (the loop was held)"
                                 % (n, p["cancellations"]))
    if made < FAIR_MIN_SHARE * expected:
        raise AssertionError("fast probe made %d attempts in %.2fs, expected about %.0f: "
                             "a streaming peer delays it" % (made, span, expected))
    f = last["fast"]
    if f["failures"] or f["timeouts"] or f["errors"]:
        raise AssertionError("fast probe: %d failures, %d timeouts, %d errors (%r)"
                             % (f["failures"], f["timeouts"], f["errors"], f["last_error"]))
    return last


SKIPPED_RE = re.compile(r"^(\d+) bytes of data before the pong \(max_skip (\d+)\)$")


def test_fair_websocket_stream():
    """Data frames before the pong: at most max_skip bytes of them (default 65536), then
    failure "N bytes of data before the pong"; with a huge max_skip the stream is read
    until the timeout, LOOP_READ_BUDGET bytes per wake-up, and the fast probe keeps pace."""
    peers = {m: hostile(m) for m in ("ws-stream", "ws-huge-frame", "ws-data-pong")}
    url = lambda m: "ws://127.0.0.1:%d/" % peers[m].port  # noqa: E731
    last = fairness([
        probe("w-stream", "websocket", period="200ms", url=url("ws-stream")),
        probe("w-huge", "websocket", period="200ms", url=url("ws-huge-frame")),
        # 1 GiB allowed: the stream is read, as fast as it comes, until the timeout
        probe("w-greedy", "websocket", period="200ms", url=url("ws-stream"), max_skip=1 << 30),
        # 49,164 bytes of frames, then the pong: within the default
        probe("w-pong", "websocket", period="200ms", url=url("ws-data-pong")),
        probe("w-pong-tight", "websocket", period="200ms", url=url("ws-data-pong"), max_skip=1000),
    ])
    for n in ("w-stream", "w-huge", "w-pong-tight"):
        m = SKIPPED_RE.match(last[n]["last_error"] or "")
        if last[n]["last_outcome"] != "failure" or not m or int(m.group(1)) <= int(m.group(2)):
            raise AssertionError("%s: %r %r, expected failure 'N bytes of data before the pong'"
                                 % (n, last[n]["last_outcome"], last[n]["last_error"]))
    eq(last["w-stream"]["last_error"], "65552 bytes of data before the pong (max_skip 65536)",
       "the fourth frame of 16 KiB + 4 goes past 65536")
    eq(last["w-pong-tight"]["last_error"], "16388 bytes of data before the pong (max_skip 1000)",
       "the first 16 KiB frame goes past 1000")
    # reads until the timeout, or (a fast machine) through its 1 GiB first
    g = last["w-greedy"]
    if not (g["last_outcome"] == "timeout" or (g["last_outcome"] == "failure" and SKIPPED_RE.match(
            g["last_error"] or "") and g["last_error"].endswith("(max_skip 1073741824)"))):
        raise AssertionError("w-greedy: %r %r" % (g["last_outcome"], g["last_error"]))
    eq(last["w-pong"]["last_outcome"], "success", "48 KiB of data, then the pong")
    if last["w-pong"]["failures"] or last["w-pong"]["timeouts"]:
        raise AssertionError("w-pong: %r" % last["w-pong"])


def test_fair_http_stream():
    """probed's http client against bodies and headers streaming forever: max_body 64 MiB
    with an expect_body that never comes, so each attempt reads 64 MiB (or until its
    timeout), LOOP_READ_BUDGET bytes per wake-up."""
    peers = {m: hostile(m) for m in ("body-forever", "body-huge", "headers-forever")}
    url = lambda m: "http://127.0.0.1:%d/" % peers[m].port  # noqa: E731
    last = fairness([
        probe("h-forever", "http", period="200ms", url=url("body-forever"), max_body=64 << 20,
              expect_body="never-there"),
        probe("h-huge", "http", period="200ms", url=url("body-huge"), max_body=64 << 20,
              expect_body="never-there"),
        probe("h-headers", "http", period="200ms", url=url("headers-forever")),
    ])
    eq(last["h-headers"]["last_error"], "response headers too large", "headers forever")
    for n in ("h-forever", "h-huge"):
        if last[n]["last_outcome"] not in ("failure", "timeout"):
            raise AssertionError("%s: %r" % (n, last[n]))


class TlsStream:
    """openssl s_server -WWW run from /, so GET /dev/zero is an endless https body (one
    connection at a time, which is all a probe opens); stopped at teardown."""

    def __init__(self):
        d = tmpdir()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=localhost"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = harness.free_port()
        self.proc = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept",
                                      "127.0.0.1:%d" % self.port, "-cert", cert, "-key", key,
                                      "-WWW"], cwd="/", stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness._targets.append(self)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, timeout=10, msg="openssl s_server on %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_fair_https_stream():
    """https:// goes through libcurl: an endless body is read up to max_body (64 MiB here,
    expect_body never found), within libcurl's own receive loop per wake-up."""
    t = TlsStream()
    last = fairness([probe("s-zero", "http", period="200ms", url="https://127.0.0.1:%d/dev/zero" % t.port,
                           max_body=64 << 20, expect_body="never-there")])
    if last["s-zero"]["last_outcome"] not in ("failure", "timeout"):
        raise AssertionError("s-zero: %r" % last["s-zero"])


def test_https_body_across_pauses():
    """An https body larger than LOOP_READ_BUDGET is taken in pieces (libcurl paused and
    resumed between wake-ups): expect_body at its very end is found, and a max_body cap
    reached right after a pause still decides the attempt without waiting for a timeout."""
    body = "x" * (300 * 1024) + "THE-END\n"
    s = harness.start_https(body=body)
    probes = [probe("whole", "http", period="200ms", url=s.url("/"), max_body=512 * 1024,
                    expect_body="THE-END"),
              probe("capped", "http", period="200ms", url=s.url("/"), max_body=100 * 1024,
                    expect_body="THE-END"),
              probe("capped-ok", "http", period="200ms", url=s.url("/"), max_body=100 * 1024)]
    d, w = run_group(probes, allowed=("success", "failure"))
    eq(w.last["whole"]["last_outcome"], "success", "expect_body at the end of 300 KiB")
    eq(w.last["capped"]["last_error"], "status 200, body does not contain expect_body",
       "only max_body read")
    eq(w.last["capped-ok"]["last_outcome"], "success", "a body past max_body is not an error")
    for n in ("whole", "capped", "capped-ok"):
        if w.last[n]["timeouts"] or max(r[1] for r in w.attempts[n]) >= TIMEOUT_MS:
            raise AssertionError("%s waited for its timeout: %r" % (n, w.attempts[n]))


def test_fair_grpc_stream():
    """A gRPC server streaming DATA as fast as flow control allows: the reply is read up
    to GRPC_MAX_REPLY_BYTES, then the attempt fails."""
    g = hostile_grpc("huge-prefix")
    last = fairness([probe("g-stream", "grpc", period="200ms", address="127.0.0.1:%d" % g.port)])
    eq(last["g-stream"]["last_error"], "malformed reply: more than 4096 bytes", "gRPC stream")


def test_fair_exec_flood():
    """Commands flooding stdout: the first 1024 bytes are kept, the rest read and dropped,
    LOOP_READ_BUDGET bytes per wake-up."""
    last = fairness([probe("e-yes%d" % i, "exec", period="200ms", timeout="500ms",
                           command=["/usr/bin/yes", "flood"]) for i in range(2)])
    for i in range(2):
        eq(last["e-yes%d" % i]["last_outcome"], "timeout", "yes never exits")


def test_websocket_max_skip_config():
    """max_skip: a websocket key (default 65536, shown by --check-config), an integer
    0..2^30; errors name the JSON path."""
    d = tmpdir()
    path = os.path.join(d, "c.json")

    def check(extra):
        with open(path, "w") as f:
            json.dump({"probes": [dict({"name": "w", "type": "websocket",
                                        "url": "ws://127.0.0.1:1/"}, **extra)]}, f)
        return run_probed(["--check-config", "-c", path])

    r = check({})
    eq(r.rc, 0, "default config: " + r.stderr)
    eq(json.loads(r.stdout)["probes"][0]["max_skip"], 65536, "default max_skip")
    r = check({"max_skip": 0})
    eq(r.rc, 0, r.stderr)
    eq(json.loads(r.stdout)["probes"][0]["max_skip"], 0, "max_skip 0 kept")
    for bad in (-1, 1.5, "64k", (1 << 30) + 1, True):
        r = check({"max_skip": bad})
        eq(r.rc, 2, "max_skip %r must be rejected" % (bad,))
        if "probes[0].max_skip" not in r.stderr:
            raise AssertionError("error does not name probes[0].max_skip: %r" % r.stderr)
    r = check({"max_skip": 1})
    eq(r.rc, 0, r.stderr)
    with open(path, "w") as f:
        json.dump({"probes": [{"name": "t", "type": "tcp", "address": "127.0.0.1:1",
                               "max_skip": 5}]}, f)
    r = run_probed(["--check-config", "-c", path])
    eq(r.rc, 2, "max_skip is a websocket key only")


# ---------------------------------------------------------------- descriptors (issue 10)

NOFILE = 128


def test_fd_reserve_low_nofile():
    """RLIMIT_NOFILE 128 and five times more slow http probes than the descriptors left
    to probes allow: the cap (max_inflight in the listening line) binds, due probes wait
    their turn with no outcome, /livez answers within 100 ms throughout, and no probe
    counts a failure, a timeout or an error (no EMFILE)."""
    t = harness.start_target()
    orig = harness._wrapper_cmd
    harness._wrapper_cmd = lambda d: ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"] + orig(d)
    try:
        # an http attempt counts 2 descriptors: about (128 - open - 32) / 2 ~ 40 at once
        n = 200
        probes = [probe("slow%03d" % i, "http", period="1s", timeout="5s",
                        url=t.url("/delay/400")) for i in range(n)]
        d = start_daemon({"probes": probes})
    finally:
        harness._wrapper_cmd = orig
    line = d.wait_log({"event": "listening"})
    cap, fds = int(line["max_inflight"]), int(line["probe_fds"])
    info("listening line: max_inflight %d, probe_fds %d (RLIMIT_NOFILE %d)", cap, fds, NOFILE)
    if not 0 < cap < n // 4 or fds > NOFILE - 32:
        raise AssertionError("cap %d / probe_fds %d for %d probes at RLIMIT_NOFILE %d"
                             % (cap, fds, n, NOFILE))
    # the first 400 ms: cap attempts run, the others wait with no outcome
    st = wait_until(lambda: (lambda c: c if sum(p["state"] == "running" for p in c.values()) >= cap
                             else None)(counts(d)), timeout=2, interval=0.01,
                    msg="%d attempts in flight" % cap)
    running = [p for p in st.values() if p["state"] == "running"]
    idle = [p for p in st.values() if p["attempts"] == 0 and p["state"] != "running"]
    info("early: %d running, %d waiting without an attempt", len(running), len(idle))
    if len(running) > cap:
        raise AssertionError("%d attempts in flight, cap %d" % (len(running), cap))
    for p in idle:
        if p["last_outcome"] is not None:
            raise AssertionError("queued probe with an outcome: %r" % p)
    if len(running) + len(idle) < n - cap:
        raise AssertionError("expected most probes still queued: %d running, %d idle"
                             % (len(running), len(idle)))
    # /livez, a fresh connection each time, while probes hold every descriptor theirs
    slowest, answered = 0.0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4.0 * S:
        s0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=2)
        try:
            c.request("GET", "/livez")
            code = c.getresponse().status
        except OSError as e:
            raise AssertionError("/livez while probes hold their descriptors: %s" % e)
        finally:
            c.close()
        took = time.monotonic() - s0
        eq(code, 200, "/livez while probes hold their descriptors")
        answered += 1
        slowest = max(slowest, took)
        time.sleep(0.02)
    info("/livez: %d answers over %.1fs, slowest %.1f ms", answered, 4.0 * S, slowest * 1000)
    if slowest > 0.1 * S:
        raise AssertionError("/livez took %.0f ms" % (slowest * 1000))
    st = counts(d)
    done = sum(p["attempts"] for p in st.values())
    info("after %.1fs: %d attempts ended", time.monotonic() - t0, done)
    if done < n:
        raise AssertionError("only %d attempts ended: the queue does not drain" % done)
    for p in st.values():
        if p["failures"] or p["timeouts"] or p["errors"] or p["cancellations"]:
            raise AssertionError("%s: %d failures, %d timeouts, %d errors, %d cancelled (%r)"
                                 % (p["name"], p["failures"], p["timeouts"], p["errors"],
                                    p["cancellations"], p["last_error"]))
    emfile = [l for l in d.logs() if "many open files" in json.dumps(l)]
    if emfile:
        raise AssertionError("EMFILE in the logs: %r" % emfile[:3])


if __name__ == "__main__":
    harness.main()
