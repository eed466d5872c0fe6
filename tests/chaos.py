"""Chaos test of the probe lifecycle (issue 3): the real daemon, 10+ http and tcp probes
against flapping targets, random SIGHUPs alternating valid and invalid configs,
SIGSTOP/SIGCONT pauses of 0.5-3 s (half of them as throttle patterns: short running
windows between frozen gaps, as request-based CPU allocation runs an instance), constant /status polling from a thread, and a final
SIGTERM.

    PROBED=build/probed TOOLS=build/tests CHAOS_SECONDS=60 /usr/bin/python3 tests/chaos.py

(`make chaos` does this; tests/integration/test_chaos.py runs a 20 s form inside
`make test`.) Output: the harness's "PASS test_chaos" / "FAIL test_chaos: ..." and one
summary line starting with "chaos:". CHAOS_SEED fixes the random sequence (the seed used
is printed in the summary, so a failing run can be replayed).

It asserts:
  - the daemon never dies before the final SIGTERM, and then exits 0 (within 5 s);
  - every /status answer is HTTP 200 and parses as the README's /status JSON, with per-probe
    counters that add up (attempts = successes + failures + timeouts + cancellations +
    errors); a connection error while the daemon is stopped is expected and only counted;
  - the "steady" probes (never changed by any reload, against a target that never
    flips) never count a failure or a timeout -- in particular none during a pause --
    and their counters never go backwards;
  - every pause of 1 s or more (twice stall_threshold) is detected as a stall
    (steady_slow always has an attempt in flight);
  - every valid reload is applied (/status reloads, a "reload" log line) and every
    invalid one is refused (a "reload_failed" ERROR line,
    probed_config_reloads_total{result="failure"});
  - private RSS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) after warm-up
    and at the end differ by no more than max(512 KiB, 25 %) (skipped under ASan, whose
    allocator quarantines freed memory, and under PROBED_WRAPPER);
  - no sanitizer report and only JSON lines on the daemon's stderr (harness teardown).

The only sleeps are the chaos rhythm itself (random gaps between actions) and the pause
durations; every wait for the daemon polls with a deadline."""

import http.client
import json
import os
import random
import select
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
import harness  # noqa: E402
from harness import start_daemon, start_target, wait_until  # noqa: E402

DEFAULT_SECONDS = 60
STEADY = ("steady_http", "steady_tcp", "steady_slow")
STATUS_STATES = {"starting", "ok", "failing", "draining"}
PROBE_STATES = {"waiting", "running", "backoff", "stopped"}
COUNTERS = ("successes", "failures", "timeouts", "cancellations", "errors")


# ------------------------------------------------------------ flapping targets

class FlapListener:
    """A tcp listener in a thread of this process, on a fixed 127.0.0.1 port, that can be
    closed (connections refused) and opened again. Accepted connections are closed."""

    def __init__(self):
        self.port = harness.free_port()
        self.sock = None
        self.lock = threading.Lock()
        self.quit = False
        self.open()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def open(self):
        with self.lock:
            if self.sock:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                s.close()
                return  # port briefly unavailable: stays closed until the next flip
            s.listen(128)
            s.setblocking(False)
            self.sock = s

    def close(self):
        with self.lock:
            if self.sock:
                self.sock.close()
                self.sock = None

    def toggle(self):
        if self.sock:
            self.close()
        else:
            self.open()

    def _run(self):
        while not self.quit:
            with self.lock:
                s = self.sock
            if s is None:
                time.sleep(0.02)
                continue
            try:
                r, _, _ = select.select([s], [], [], 0.05)
                if r:
                    c, _ = s.accept()
                    c.close()
            except (OSError, ValueError):
                pass  # closed under us by a flip

    def stop(self):
        self.quit = True
        self.close()
        self.thread.join(2)


def http_get(port, path, timeout):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def set_health(target, code):
    st, _ = http_get(target.port, "/control/health?status=%d" % code, 5)
    if st != 200:
        raise AssertionError("target control answered %d" % st)


# ------------------------------------------------------------ configs

def base_probes(stable, flappers, flap_tcp, dead_port):
    s = "127.0.0.1:%d" % stable.port
    probes = [
        # never changed by a reload, against a target that never flips: any failure or
        # timeout counted here is a false one
        {"name": "steady_http", "type": "http", "url": stable.url("/status/200"),
         "timeout": "5s", "period": "200ms", "failure_threshold": 1},
        {"name": "steady_tcp", "type": "tcp", "address": s, "timeout": "5s",
         "period": "200ms", "failure_threshold": 1},
        # in flight most of the time, with a deadline a 3 s pause overruns: the stall
        # must cancel it, not time it out
        {"name": "steady_slow", "type": "http", "url": stable.url("/delay/300"),
         "timeout": "2s", "period": "100ms", "failure_threshold": 1},
    ]
    for i, t in enumerate(flappers):
        probes.append({"name": "flap%d" % i, "type": "http", "url": t.url("/health"),
                       "period": "%dms" % (100 + 50 * i)})
    probes += [
        {"name": "flap_tcp0", "type": "tcp", "address": "127.0.0.1:%d" % flap_tcp.port},
        {"name": "flap_tcp1", "type": "tcp", "address": "127.0.0.1:%d" % flap_tcp.port,
         "period": "250ms", "scopes": ["readiness"]},
        {"name": "always_503", "type": "http", "url": stable.url("/status/503"),
         "scopes": ["readiness"]},
        {"name": "hang", "type": "http", "url": stable.url("/hang"), "timeout": "400ms",
         "period": "500ms", "scopes": ["readiness"]},
        {"name": "refused", "type": "tcp", "address": "127.0.0.1:%d" % dead_port,
         "scopes": ["liveness"]},
        {"name": "delay_50", "type": "http", "url": flappers[0].url("/delay/50")},
    ]
    return probes


def valid_config(rng, probes, generation):
    """The base probes with random changes to the non-steady ones, plus a few extras."""
    out = []
    removed = 0
    for p in probes:
        p = dict(p)
        if p["name"] not in STEADY:
            r = rng.random()
            if r < 0.15 and removed < 2:  # base 13 probes: at least 11 remain
                removed += 1
                continue  # removed for this generation
            if r < 0.45:
                p["period"] = rng.choice(["100ms", "150ms", "200ms", "300ms"])
            elif r < 0.55:
                p["timeout"] = rng.choice(["500ms", "1s", "2s"])
        out.append(p)
    for i in range(rng.randint(0, 3)):
        out.append({"name": "extra%d_%d" % (generation % 3, i), "type": "tcp",
                    "address": probes[1]["address"], "period": "300ms"})
    return {"stall_threshold": "500ms",
            "backoff": {"initial": "200ms", "max": "2s"},
            "defaults": {"period": "200ms", "timeout": "1s", "startup_period": "100ms",
                         "success_threshold": 1, "failure_threshold": 2},
            "probes": out}


def invalid_config(rng, good):
    kind = rng.randrange(5)
    if kind == 0:
        return json.dumps(good)[:-7]  # truncated JSON
    bad = json.loads(json.dumps(good))
    if kind == 1:
        bad["probes"][0]["timeout"] = "5x"
    elif kind == 2:
        bad["probes"].append(dict(bad["probes"][1]))  # duplicate name
    elif kind == 3:
        bad["probes"][2]["colour"] = "blue"  # unknown key
    else:
        bad["defaults"]["failure_threshold"] = 0
    return bad


# ------------------------------------------------------------ observation

def private_rss_kib(pid):
    total = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def is_asan(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def check_status(st):
    """Raises AssertionError unless st is a well-formed /status (README "HTTP endpoints") object."""
    for k in ("version", "status", "started", "live", "ready", "draining", "uptime_seconds",
              "stalls", "reloads", "probes"):
        if k not in st:
            raise AssertionError("/status lacks %r" % k)
    if st["status"] not in STATUS_STATES:
        raise AssertionError("/status status %r" % st["status"])
    names = set()
    for p in st["probes"]:
        if p["name"] in names:
            raise AssertionError("probe %r twice in /status" % p["name"])
        names.add(p["name"])
        if p["state"] not in PROBE_STATES:
            raise AssertionError("%s: state %r" % (p["name"], p["state"]))
        if p["healthy"] not in (True, False, None):
            raise AssertionError("%s: healthy %r" % (p["name"], p["healthy"]))
        s = sum(p[c] for c in COUNTERS)
        if p["attempts"] != s:
            raise AssertionError("%s: attempts %d != sum of outcomes %d: %r"
                                 % (p["name"], p["attempts"], s, p))


class Poller(threading.Thread):
    """Polls /status constantly; every answer must parse. Keeps the totals the summary
    needs and checks the steady probes' counters never go backwards."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_flag = False
        self.answers = self.conn_errors = 0
        self.problems = []
        self.last = None
        self.lock = threading.Lock()
        self.max_attempts = {}     # name -> largest attempts seen in the current life
        self.retired_attempts = 0  # attempts of probe lives that ended (reset by reload)

    def run(self):
        while not self.stop_flag:
            try:
                code, body = http_get(self.port, "/status", 3 * harness.SCALE)
            except (OSError, http.client.HTTPException):
                self.conn_errors += 1  # expected while the daemon is stopped
                time.sleep(0.02)
                continue
            try:
                if code != 200:
                    raise AssertionError("/status answered %d" % code)
                st = json.loads(body)
                check_status(st)
                self.observe(st)
            except (AssertionError, ValueError, KeyError, TypeError) as e:
                self.problems.append("bad /status answer (%s): %r" % (e, body[:300]))
            self.answers += 1
            time.sleep(0.01)

    def observe(self, st):
        with self.lock:
            prev = {p["name"]: p for p in self.last["probes"]} if self.last else {}
            for p in st["probes"]:
                n = p["name"]
                old = self.max_attempts.get(n, 0)
                if p["attempts"] < old:
                    self.retired_attempts += old  # a changed probe restarted from zero
                    old = 0
                self.max_attempts[n] = max(old, p["attempts"])
                if n in STEADY and n in prev:
                    for c in ("attempts",) + COUNTERS:
                        if p[c] < prev[n][c]:
                            self.problems.append("%s: %s went backwards %d -> %d (steady probes "
                                                 "are unchanged by every reload)"
                                                 % (n, c, prev[n][c], p[c]))
            self.last = st

    def attempts_total(self):
        with self.lock:
            return self.retired_attempts + sum(self.max_attempts.values())


def hang_report(pid):
    """Where a process that does not exit is stuck: thread states and, when gdb is
    installed, every thread's backtrace."""
    out = []
    try:
        for tid in sorted(os.listdir("/proc/%d/task" % pid)):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                wchan = f.read()
            out.append("thread %s state %s wchan %s" % (tid, st, wchan))
    except OSError as e:
        out.append("(cannot read /proc: %s)" % e)
    gdb = "/usr/bin/gdb"
    if os.path.exists(gdb):
        try:
            import subprocess
            p = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                               capture_output=True, text=True, timeout=60)
            out.append(p.stdout[-6000:])
        except (OSError, subprocess.TimeoutExpired) as e:
            out.append("(gdb failed: %s)" % e)
    return "\n".join(out)


def steady_view(d):
    code, body = http_get(d.port, "/status", 5 * harness.SCALE)
    if code != 200:
        raise AssertionError("/status answered %d" % code)
    st = json.loads(body)
    ps = {p["name"]: p for p in st["probes"]}
    return st, {n: ps[n] for n in STEADY}


def pause(d, seconds):
    """SIGSTOP for `seconds` of wall time, then SIGCONT."""
    stop_at = time.monotonic() + seconds
    d.signal(signal.SIGSTOP)
    try:
        while time.monotonic() < stop_at:
            time.sleep(stop_at - time.monotonic())  # the pause itself
    finally:
        os.kill(d.pid, signal.SIGCONT)


def run_for(seconds):
    """A running window of the throttle pattern: the daemon runs for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(end - time.monotonic())


def false_count(view):
    return sum(p["failures"] + p["timeouts"] for p in view.values())


# ------------------------------------------------------------ the run

def run(seconds, seed=None):
    seed = int(os.environ.get("CHAOS_SEED", "0")) or seed or random.SystemRandom().randrange(1, 1 << 30)
    rng = random.Random(seed)
    # the harness stops a test after 120 s * SCALE: a long chaos run needs more
    signal.alarm(int(seconds + 120 * harness.SCALE))
    asan = is_asan(harness.PROBED)

    stable = start_target()
    flappers = [start_target() for _ in range(4)]
    flap_tcp = FlapListener()
    dead_port = harness.free_port()
    probes = base_probes(stable, flappers, flap_tcp, dead_port)
    generation = 0
    good = valid_config(rng, probes, generation)
    d = start_daemon(good)
    for n in STEADY:
        d.wait_log({"event": "healthy", "probe": n}, timeout=10)

    poller = Poller(d.port)
    poller.start()
    quit_flips = threading.Event()
    flips = [0]

    def flipper():
        frng = random.Random(seed + 1)
        state = [200] * len(flappers)
        while not quit_flips.wait(frng.uniform(0.1, 0.8)):
            if frng.random() < 0.25:
                flap_tcp.toggle()
            else:
                i = frng.randrange(len(flappers))
                state[i] = 503 if state[i] == 200 else 200
                try:
                    set_health(flappers[i], state[i])
                except (OSError, http.client.HTTPException):
                    pass  # a flip that did not land is just less chaos
            flips[0] += 1

    flip_thread = threading.Thread(target=flipper, daemon=True)
    flip_thread.start()

    problems = []
    reloads_ok = reloads_failed = 0
    pauses, frozen_s = 0, 0.0
    usr1 = usr1_truncated = 0
    missed_stalls = 0
    throttled_windows = 0
    false_during_pauses = 0
    next_valid = True
    t0 = time.monotonic()
    end = t0 + seconds
    warm_at = t0 + min(max(5.0, seconds * 0.25), seconds / 2)
    rss_before = rss_after = None
    st0, v0 = steady_view(d)
    false_at_start = false_count(v0)

    def alive_or_fail(what):
        if not d.alive():
            raise AssertionError("probed died (%s, exit %r); stderr tail:\n%s"
                                 % (what, d.proc.returncode, d.stderr_text()[-3000:]))

    try:
        while time.monotonic() < end:
            alive_or_fail("during chaos")
            if rss_before is None and time.monotonic() >= warm_at:
                rss_before = private_rss_kib(d.pid)
            r = rng.random()
            if r < 0.45:
                # SIGHUP, alternating valid and invalid files; wait for its log line so
                # that no two SIGHUPs merge into one pending signal
                if next_valid:
                    generation += 1
                    good = valid_config(rng, probes, generation)
                    d.write_config(good)
                    n = len([l for l in d.logs() if l.get("event") == "reload"
                             and l.get("severity") == "INFO"])
                    d.signal(signal.SIGHUP)
                    wait_until(lambda: len([l for l in d.logs() if l.get("event") == "reload"
                                            and l.get("severity") == "INFO"]) > n,
                               timeout=5, msg="the reload line of valid reload %d" % generation)
                    reloads_ok += 1
                else:
                    d.write_config(invalid_config(rng, good))
                    n = len([l for l in d.logs() if l.get("event") == "reload_failed"])
                    d.signal(signal.SIGHUP)
                    line = wait_until(lambda: ([l for l in d.logs()
                                                if l.get("event") == "reload_failed"][n:] or [None])[0],
                                      timeout=5, msg="the reload_failed line of an invalid reload")
                    if line.get("severity") != "ERROR" or not line.get("error"):
                        problems.append("reload_failed line without ERROR/error: %r" % line)
                    reloads_failed += 1
                next_valid = not next_valid
            elif r < 0.55:
                # SIGUSR1: "status" line(s), the first of which parses like /status
                n = len([l for l in d.logs() if l.get("event") == "status"])
                d.signal(signal.SIGUSR1)
                line = wait_until(lambda: ([l for l in d.logs()
                                            if l.get("event") == "status"][n:] or [None])[0],
                                  timeout=5, msg="the status line of SIGUSR1")
                try:
                    if line.get("truncated"):
                        usr1_truncated += 1
                        raise AssertionError("truncated (LOG_LINE_MAX)")
                    check_status(json.loads(line["status"]))
                except (AssertionError, ValueError, KeyError, TypeError) as e:
                    problems.append("SIGUSR1 status line does not parse (%s): %r" % (e, line))
                usr1 += 1
            elif r < 0.85:
                # a pause: the steady probes must not count a failure or timeout for it
                st_before, before = steady_view(d)
                length = rng.uniform(0.5, 3.0)
                if rng.random() < 0.5:
                    # request-based CPU first: running windows of 50-200 ms between frozen
                    # gaps of 0.1-1.5 s, then the pause checked below
                    for _ in range(rng.randint(1, 5)):
                        g = rng.uniform(0.1, 1.5)
                        pause(d, g)
                        frozen_s += g
                        run_for(rng.uniform(0.05, 0.2))
                        throttled_windows += 1
                pause(d, length)
                pauses += 1
                frozen_s += length
                alive_or_fail("after a pause")
                after = wait_until(lambda: (lambda v: v if all(
                    v[n]["attempts"] >= before[n]["attempts"] + 2 for n in STEADY) else None)(
                    steady_view(d)[1]), timeout=10, msg="steady attempts after a pause")
                # steady_slow is in flight nearly all the time: a pause of 1 s or more
                # (twice stall_threshold) must be seen as a stall
                st_after = steady_view(d)[0]
                if length >= 1.0 and st_after["stalls"] <= st_before["stalls"]:
                    missed_stalls += 1
                    problems.append("pause %d (%.1fs, attempts in flight) not detected as a stall"
                                    % (pauses, length))
                extra = false_count(after) - false_count(before)
                if extra:
                    false_during_pauses += extra
                    problems.append("pause %d (%.1fs): steady probes counted %d failure(s)/"
                                    "timeout(s): %s" % (pauses, length, extra, json.dumps(
                                        {n: (after[n]["failures"], after[n]["timeouts"],
                                             after[n]["last_error"]) for n in STEADY})))
            # the chaos rhythm: a random gap before the next action
            gap = rng.uniform(0.1, 0.8)
            if time.monotonic() + gap < end:
                time.sleep(gap)
            elif time.monotonic() < end:
                time.sleep(max(0.0, end - time.monotonic()))
        alive_or_fail("at the end of chaos")
        quit_flips.set()
        flip_thread.join(5)
        if rss_before is None:
            rss_before = private_rss_kib(d.pid)
        rss_after = private_rss_kib(d.pid)
        st, vend = steady_view(d)
        false_total = false_count(vend) - false_at_start
        if false_total:
            problems.append("steady probes counted %d false failure(s)/timeout(s) in all: %s"
                            % (false_total, json.dumps({n: (vend[n]["failures"], vend[n]["timeouts"],
                                                            vend[n]["last_error"])
                                                        for n in STEADY})))
        if st["reloads"] != reloads_ok:
            problems.append("/status reloads %d, valid SIGHUPs %d" % (st["reloads"], reloads_ok))
        # counters alone reach the status server within SNAPSHOT_STATS_INTERVAL_MS
        want = 'probed_config_reloads_total{result="failure"} %d' % reloads_failed
        last = {}

        def metrics_have():
            last["m"] = http_get(d.port, "/metrics", 5 * harness.SCALE)[1]
            return want in last["m"].splitlines()
        try:
            wait_until(metrics_have, timeout=2, interval=0.05, msg=want)
        except AssertionError:
            problems.append("metrics lack %r: %r" % (want, [l for l in last["m"].splitlines()
                                                           if "reloads_total" in l]))
        stalls = st["stalls"]
    finally:
        quit_flips.set()
        poller.stop_flag = True
        poller.join(10 * harness.SCALE)
        flap_tcp.stop()

    d.signal(signal.SIGTERM)
    t_term = time.monotonic()
    try:
        rc = d.wait_exit(timeout=5)
    except AssertionError as e:
        raise AssertionError("chaos (seed %d): %s after SIGTERM\n%s\nstderr tail:\n%s"
                             % (seed, e, hang_report(d.pid), d.stderr_text()[-4000:]))
    exit_s = time.monotonic() - t_term
    problems += poller.problems[:5]
    if poller.answers == 0:
        problems.append("no /status answer at all")
    if rc != 0:
        problems.append("exit status %r after SIGTERM" % rc)
    rss_note = ""
    if asan or harness.WRAPPER:
        rss_note = " (not checked: %s)" % ("ASan build" if asan else "under " + harness.WRAPPER[0])
    elif rss_after > rss_before + max(512, rss_before // 4):
        problems.append("private RSS grew from %d KiB (after warm-up) to %d KiB"
                        % (rss_before, rss_after))
    duration = time.monotonic() - t0
    print("chaos: seed=%d duration=%.1fs probes=%d reloads ok=%d failed=%d pauses=%d "
          "(%.1fs frozen, %d throttled windows) stalls=%d (missed %d) usr1=%d (%d truncated) flips=%d attempts=%d false_failures=%d status_answers=%d "
          "status_conn_errors=%d rss_before=%dKiB rss_after=%dKiB%s exit=%r in %.2fs"
          % (seed, duration, len(good["probes"]), reloads_ok, reloads_failed, pauses, frozen_s,
             throttled_windows, stalls, missed_stalls, usr1, usr1_truncated, flips[0], poller.attempts_total(), false_total, poller.answers,
             poller.conn_errors, rss_before, rss_after, rss_note, rc, exit_s), flush=True)
    if problems:
        raise AssertionError("chaos (seed %d): %s" % (seed, "; ".join(problems)))


def test_chaos():
    run(float(os.environ.get("CHAOS_SECONDS", DEFAULT_SECONDS)))


if __name__ == "__main__":
    harness.main()
