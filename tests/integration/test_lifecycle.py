"""Integration tests of the probe lifecycle (README "Lifecycle", "Signals") against the real
daemon process: SIGHUP reload by probe name, invalid reloads, a changed `listen`, stall
detection under SIGSTOP/SIGCONT (also a freeze shorter than the attempt's timeout, and a
stall that begins while the loop is busy: blocked writing to a full stderr pipe), the
status server under fd exhaustion, backoff on `error` outcomes (a real EMFILE, made by
lowering the running daemon's RLIMIT_NOFILE with prlimit(2)), shutdown during backoff,
during hung attempts and while frozen, the second signal, and SIGUSR1.

Observations come from /status, /metrics, the JSON log lines and, where the status
server itself cannot accept a connection (no free fd), from the SIGUSR1 "status" line.
The only fixed sleeps are the freeze durations themselves (the point of those tests);
everything else polls with deadlines. See harness.py for the API."""

import calendar
import fcntl
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (config, curl, eq, http, probe, probes_by_name, start_daemon, start_target, status, tcp, wait_probe, wait_until)  # noqa: E402



# ------------------------------------------------------------ helpers









def metrics(d):
    code, body, _ = curl(d.url("/metrics"))
    eq(code, 200, "/metrics code")
    return body


def metric(text, name_labels):
    """Value of the sample whose name{labels} is exactly name_labels (None if absent)."""
    for line in text.splitlines():
        if line.startswith(name_labels + " "):
            return float(line.split()[-1])
    return None


def events(d, event, **fields):
    return [l for l in d.logs()
            if l.get("event") == event and all(l.get(k) == v for k, v in fields.items())]


def wait_count(d, event, n, timeout=10, **fields):
    """Waits until at least n log lines of that event (and fields) exist; returns them."""
    try:
        return wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(events(d, event, **fields)),
                          timeout=timeout, msg="%d %r log line(s) %r" % (n, event, fields))
    except AssertionError as e:
        raise AssertionError("%s; stderr so far:\n%s" % (e, d.stderr_text()[-3000:]))


def after(d, event):
    """Log lines written after the first line of that event ([] if there is none)."""
    logs = d.logs()
    for i, l in enumerate(logs):
        if l.get("event") == event:
            return logs[i + 1:]
    return []


def usr1_status(d):
    """The full status as logged by SIGUSR1 (needs no fd in the daemon)."""
    n = len(events(d, "status"))
    d.signal(signal.SIGUSR1)
    line = wait_count(d, "status", n + 1)[n]
    return json.loads(line["status"])


def fd_numbers(pid):
    return {int(x) for x in os.listdir("/proc/%d/fd" % pid)}


def lowest_free_fd(pid, samples=10):
    """The lowest fd number the daemon does not hold, taken as the minimum over a few
    samples so that a probe socket open at one sampling instant does not count."""
    best = None
    for _ in range(samples):
        used = fd_numbers(pid)
        n = 0
        while n in used:
            n += 1
        best = n if best is None else min(best, n)
        time.sleep(0.02)
    return best


def exhaust_fds(d):
    """Lowers the running daemon's RLIMIT_NOFILE to its lowest free fd, so that every new
    socket() fails with EMFILE. Only the soft limit moves, so that it can be raised back
    without CAP_SYS_RESOURCE. Returns the previous limits."""
    old = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)
    n = lowest_free_fd(d.pid)
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (n, old[1]))
    return old


def restore_fds(d, old):
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, old)


def wait_status_reachable(d, timeout=10):
    return wait_until(lambda: curl(d.url("/status"), timeout=1)[0] == 200, timeout=timeout,
                      msg="/status reachable again")


def attempts_after_draining(d):
    """debug 'attempt' lines after the 'draining' line whose outcome is not cancelled."""
    return [l for l in after(d, "draining")
            if l.get("event") == "attempt" and l.get("outcome") != "cancelled"]


def wait_exit_within(d, seconds):
    t0 = time.monotonic()
    rc = d.wait_exit(timeout=max(seconds, 5))
    took = time.monotonic() - t0
    return rc, took


# ------------------------------------------------------------ SIGHUP reload

def test_reload_by_name():
    t = start_target()
    ok = t.url("/status/200")
    slow = t.url("/delay/200")  # a is in flight most of the time: the reload must not cancel it
    d = start_daemon(config(http("a", slow), http("b", ok), tcp("c", "127.0.0.1:%d" % t.port)))
    for name in ("a", "b", "c"):
        d.wait_log({"event": "healthy", "probe": name})
    before = probes_by_name(wait_until(
        lambda: (lambda s: s if all(p["attempts"] >= 10 for p in s["probes"]) else None)(status(d)),
        msg="10 attempts of each probe"))
    d.write_config(config(http("a", slow),
                          http("b", t.url("/status/204"), period="2s", startup_period="2s"),
                          http("d", ok)))
    d.signal(signal.SIGHUP)
    line = d.wait_log({"event": "reload"})
    eq((line.get("kept"), line.get("changed"), line.get("added"), line.get("removed")),
       ("1", "1", "1", "1"), "reload line kept/changed/added/removed")
    st = wait_until(lambda: (lambda s: s if "d" in probes_by_name(s) else None)(status(d)),
                    msg="probe d in /status")
    ps = probes_by_name(st)
    eq(sorted(ps), ["a", "b", "d"], "probes after reload")
    eq(st["reloads"], 1, "/status reloads")
    a, b = ps["a"], ps["b"]
    assert a["attempts"] >= before["a"]["attempts"], "a's counters were reset: %r -> %r" % (
        before["a"], a)
    eq(a["healthy"], True, "a stays healthy")
    eq(a["last_change"], before["a"]["last_change"], "a's last_change")
    eq(a["cancellations"], 0, "a's cancellations (an unchanged probe's attempt is not cancelled)")
    assert b["attempts"] < before["b"]["attempts"] and b["attempts"] <= 2, \
        "b was not restarted from zero: %r (before: %r)" % (b, before["b"])
    eq(b["target"], t.url("/status/204"), "b's new url")
    eq(b["cancellations"] + b["failures"] + b["timeouts"], 0, "b's fresh counters")
    # a keeps running (its attempts keep growing) and d runs
    wait_probe(d, "a", lambda p: p["attempts"] >= a["attempts"] + 3, what="a keeps running")
    wait_probe(d, "d", lambda p: p["healthy"] is True, what="d healthy")
    eq(len(events(d, "healthy", probe="a")), 1, "a's healthy transitions")
    m = metrics(d)
    eq(metric(m, 'probed_config_reloads_total{result="success"}'), 1, "reloads success metric")
    eq(metric(m, 'probed_config_reloads_total{result="failure"}'), 0, "reloads failure metric")
    assert 'probe="c"' not in m, "removed probe c still in /metrics"


def test_reload_defaults_change_restarts_inheriting_probes():
    """A probe is changed when its effective config changes, e.g. through `defaults`;
    one that sets every timing itself is unchanged by the same edit."""
    t = start_target()
    own = {"period": "100ms", "timeout": "1s", "startup_period": "50ms", "initial_delay": "0s",
           "success_threshold": 1, "failure_threshold": 2}
    cfg = config(http("x", t.url("/status/200")), http("y", t.url("/status/200"), **own))
    d = start_daemon(cfg)
    before = probes_by_name(wait_until(
        lambda: (lambda s: s if all(p["attempts"] >= 10 for p in s["probes"]) else None)(status(d)),
        msg="10 attempts of x and y"))
    cfg["defaults"]["timeout"] = "2s"
    d.write_config(cfg)
    d.signal(signal.SIGHUP)
    line = d.wait_log({"event": "reload"})
    eq((line.get("kept"), line.get("changed")), ("1", "1"), "reload kept/changed")
    ps = probes_by_name(status(d))
    assert ps["x"]["attempts"] < before["x"]["attempts"], "x (inherits defaults) kept its " \
        "counters: %r -> %r" % (before["x"]["attempts"], ps["x"]["attempts"])
    assert ps["y"]["attempts"] >= before["y"]["attempts"], "y (own timings) was reset"


def test_reload_many_probes_by_name():
    """600 probes: the reload's name matching (a hash table) keeps, changes, removes and
    adds exactly the right ones, whatever the collisions."""
    t = start_target()
    addr = "127.0.0.1:%d" % t.port
    slow = {"period": "5s", "startup_period": "5s"}
    old = [tcp("p%03d" % i, addr, **slow) for i in range(600)]
    d = start_daemon(config(*old))
    wait_until(lambda: all(p["attempts"] >= 1 for p in status(d)["probes"]), timeout=30,
               msg="every probe attempted")
    # keep 0-199, change 200-399 (another period), drop 400-599, add 600-799
    new = old[:200] + [tcp("p%03d" % i, addr, period="6s", startup_period="6s")
                       for i in range(200, 400)]
    new += [tcp("p%03d" % i, addr, **slow) for i in range(600, 800)]
    d.write_config(config(*new))
    d.signal(signal.SIGHUP)
    line = d.wait_log({"event": "reload"})
    eq((line.get("kept"), line.get("changed"), line.get("added"), line.get("removed")),
       ("200", "200", "200", "200"), "reload line kept/changed/added/removed")
    names = sorted(p["name"] for p in status(d)["probes"])
    eq(names, sorted(p["name"] for p in new), "probes after reload")


def test_reload_of_10000_probes_while_100_run():
    """A SIGHUP adding 9,900 http probes beside 100 running ones: the file is read and
    parsed off the loop thread, so the loop is neither stalled nor busy, and the 100 keep their
    state (no cancellation, no failure) and their schedule."""
    t = start_target()
    addr = "127.0.0.1:%d" % t.port
    run = [tcp("run%03d" % i, addr, period="100ms", startup_period="100ms") for i in range(100)]
    # a loop late by more than 100 ms through its own work logs loop_busy
    d = start_daemon(config(*run, stall_threshold="100ms"))
    wait_until(lambda: all(p["successes"] >= 2 for p in status(d)["probes"]), timeout=30,
               msg="the 100 running probes succeeded")
    quiet = {"period": "1h", "startup_period": "1h", "initial_delay": "1h"}
    # http probes to a host name (parsing does no DNS; a name resolves when an attempt connects)
    d.write_config(config(*(run + [http("new%04d" % i, "http://localhost:%d/h%d" % (t.port, i), **quiet)
                                   for i in range(9900)]), stall_threshold="100ms"))
    before = probes_by_name(status(d))
    d.signal(signal.SIGHUP)
    line = d.wait_log({"event": "reload"}, timeout=30)
    eq((line.get("kept"), line.get("added")), ("100", "9900"), "reload line kept/added")
    after = wait_until(lambda: (lambda v: v if all(v[p["name"]]["successes"] >= before[p["name"]]["successes"] + 2
                                                   for p in run) else None)(probes_by_name(status(d))),
                       timeout=30, msg="the 100 probes went on after the reload")
    eq(len(after), 10000, "probes after the reload")
    for p in run:
        v = after[p["name"]]
        eq((v["cancellations"], v["failures"], v["timeouts"]), (0, 0, 0),
           "%s cancellations, failures, timeouts" % p["name"])
    eq([l for l in d.logs() if l.get("event") in ("stall", "loop_busy")], [], "stall or loop_busy lines")


def test_reload_invalid_changes_nothing():
    t = start_target()
    cfg = config(http("a", t.url("/status/200")), tcp("b", "127.0.0.1:%d" % t.port))
    d = start_daemon(cfg)
    for name in ("a", "b"):
        d.wait_log({"event": "healthy", "probe": name})
    path = d.config_path
    bad = [
        ("bad JSON", lambda: d.write_config('{"probes": [ {"name": "a", '), None),
        ("bad field", lambda: d.write_config(config(http("a", t.url("/status/200"), timeout="5x"),
                                                    tcp("b", "127.0.0.1:%d" % t.port))),
         "probes[0].timeout"),
        ("a directory", lambda: (os.remove(path), os.mkdir(path)), None),
        ("a missing file", lambda: os.rmdir(path), None),
    ]
    prev = probes_by_name(status(d))
    for i, (what, make, json_path) in enumerate(bad, 1):
        make()
        d.signal(signal.SIGHUP)
        line = wait_count(d, "reload_failed", i)[i - 1]
        eq(line.get("severity"), "ERROR", "%s: severity" % what)
        err = line.get("error") or ""
        assert err, "%s: reload_failed line has no error: %r" % (what, line)
        if json_path:
            assert json_path in err and "5x" in err, "%s: error %r does not name %s" % (
                what, err, json_path)
        else:
            assert "config" in err or path in err, "%s: error %r names neither the file nor config" % (
                what, err)
        # the old config keeps running: same probes, counters still growing, nothing reset
        cur = wait_until(lambda: (lambda ps: ps if all(ps[n]["attempts"] >= prev[n]["attempts"] + 2
                                                       for n in prev) else None)(
            probes_by_name(status(d))), msg="%s: probes keep running" % what)
        eq(sorted(cur), ["a", "b"], "%s: probes" % what)
        for n in cur:
            eq(cur[n]["healthy"], True, "%s: %s healthy" % (what, n))
            eq(cur[n]["cancellations"], 0, "%s: %s cancellations" % (what, n))
        eq(cur["a"]["target"], t.url("/status/200"), "%s: a's url" % what)
        prev = cur
    st = status(d)
    eq(st["reloads"], 0, "/status reloads after only invalid reloads")
    m = metrics(d)
    eq(metric(m, 'probed_config_reloads_total{result="failure"}'), len(bad), "failure metric")
    eq(metric(m, 'probed_config_reloads_total{result="success"}'), 0, "success metric")
    assert not events(d, "reload"), "a reload line after invalid files: %r" % events(d, "reload")
    # and a valid file afterwards is applied
    d.write_config(config(http("a", t.url("/status/200")), tcp("b", "127.0.0.1:%d" % t.port),
                          tcp("e", "127.0.0.1:%d" % t.port)))
    d.signal(signal.SIGHUP)
    d.wait_log({"event": "reload"})
    wait_probe(d, "e", lambda p: p["healthy"] is True, what="e healthy")
    eq(status(d)["reloads"], 1, "reloads after the valid file")


def test_reload_listen_change_warns():
    t = start_target()
    port, other = harness.free_port(), harness.free_port()
    cfg = config(http("a", t.url("/status/200")), listen="127.0.0.1:%d" % port)
    d = start_daemon(cfg, listen=None)
    eq(d.port, port, "listening port from the config")
    d.wait_log({"event": "healthy", "probe": "a"})
    cfg2 = config(http("a", t.url("/status/200")), tcp("b", "127.0.0.1:%d" % t.port),
                  listen="127.0.0.1:%d" % other)
    d.write_config(cfg2)
    d.signal(signal.SIGHUP)
    warn = d.wait_log(lambda l: l.get("severity") == "WARNING" and "listen" in json.dumps(l))
    assert "restart" in warn.get("message", ""), "listen warning does not say restart: %r" % warn
    d.wait_log(lambda l: l.get("event") == "reload" and l.get("severity") == "INFO")
    # the rest of the file is applied, the server stays on the old port
    wait_probe(d, "b", lambda p: p["healthy"] is True, what="b (added by the reload) healthy")
    eq(status(d)["reloads"], 1, "reloads")
    eq(curl("http://127.0.0.1:%d/livez" % other, timeout=2)[0], 0, "new port must not answer")
    eq(curl(d.url("/livez"))[0], 200, "old port still answers")


# ------------------------------------------------------------ stall

def freeze(d, seconds):
    """SIGSTOP the daemon for `seconds` (measured with a deadline), then SIGCONT."""
    end = time.monotonic() + seconds
    d.signal(signal.SIGSTOP)
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(left)  # the freeze itself is the point of the test
    finally:
        os.kill(d.pid, signal.SIGCONT)


def test_stall_freeze_flips_nothing():
    t = start_target()
    d = start_daemon(config(http("slow", t.url("/delay/300"), timeout="2s", period="100ms",
                                 startup_period="100ms", failure_threshold=1)))
    d.wait_log({"event": "healthy", "probe": "slow"})
    before = wait_probe(d, "slow", lambda p: p["successes"] >= 2 and p["state"] == "running")
    freeze(d, 5)
    stall = d.wait_log({"event": "stall"})
    eq(stall.get("severity"), "WARNING", "stall line severity")
    p = wait_probe(d, "slow", lambda p: p["successes"] >= before["successes"] + 2,
                   what="attempts after the freeze")
    eq((p["failures"], p["timeouts"]), (0, 0), "failures, timeouts after a 5 s freeze")
    eq(p["healthy"], True, "healthy after the freeze")
    eq(p["last_change"], before["last_change"], "last_change")
    # timeouts count awake time: the attempt in flight keeps its connection and its
    # deadline moves by the frozen span, so nothing is cancelled (README, "Freezes and CPU
    # throttling")
    eq(p["cancellations"], 0, "attempts cancelled by the stall")
    st = status(d)
    assert st["stalls"] >= 1, "/status stalls = %r" % st["stalls"]
    assert metric(metrics(d), "probed_stalls_total") >= 1, "probed_stalls_total"
    assert not events(d, "unhealthy"), "unhealthy after a freeze: %r" % events(d, "unhealthy")
    eq(curl(d.url("/readyz"))[:2], (200, "ok\n"), "/readyz after the freeze")


def wall_of(rfc3339):
    """Seconds since the epoch of an RFC 3339 UTC time as /status writes it."""
    m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(\.\d+)?", rfc3339)
    y, mo, da, h, mi, se = (int(x) for x in m.groups()[:6])
    return calendar.timegm((y, mo, da, h, mi, se)) + float(m.group(7) or 0)


def test_stall_shorter_than_timeout_detected():
    """A 2 s freeze (> stall_threshold 500ms) in the middle of an attempt with a 10 s
    timeout, while the daemon only waits for the target's answer: the README says any freeze
    longer than stall_threshold is seen, even one that ends before a deadline; the attempt
    in flight keeps its connection and its deadline moves by the frozen span."""
    t = start_target()
    d = start_daemon(config(http("slow", t.url("/delay/1000"), timeout="10s", period="100ms",
                                 startup_period="100ms", failure_threshold=1)))
    d.wait_log({"event": "healthy", "probe": "slow"})
    freezes = 0
    for _ in range(2):
        # just after an attempt ended (a new one started), then 300 ms into that one:
        # its request is sent and the daemon waits for the answer, due 700 ms later
        p0 = probe(d, "slow")
        p1 = wait_probe(d, "slow", lambda p: p["successes"] > p0["successes"], what="next attempt")
        start = wall_of(p1["last_attempt"])
        wait_until(lambda: time.time() >= start + 0.3, interval=0.005, msg="300 ms into the attempt")
        freeze(d, 2)
        freezes += 1
        wait_probe(d, "slow", lambda p: p["successes"] >= p1["successes"] + 2,
                   what="attempts after the freeze")
    p = probe(d, "slow")
    st = status(d)
    assert st["stalls"] >= freezes and len(events(d, "stall")) >= freezes, \
        "%d freezes of 2 s with an attempt in flight, %d stall(s) detected (stall_threshold " \
        "500ms); view: %s" % (freezes, st["stalls"], json.dumps(p))
    eq((p["failures"], p["timeouts"], p["healthy"]), (0, 0, True), "failures, timeouts, healthy")


def thread_wchan(pid):
    try:
        with open("/proc/%d/task/%d/wchan" % (pid, pid)) as f:
            return f.read()
    except OSError:
        return ""


def test_stall_while_loop_busy_detected():
    """A stall that begins while the loop thread is busy (not asleep in epoll_wait) must
    be seen too: here the loop blocks for 2.5 s writing a log line to a full stderr pipe
    (as it would stop if frozen or throttled in the middle of an iteration). When it
    runs again it is 2.5 s past the wake-up it should have had (stall_threshold 500ms)."""
    t = start_target()
    d = harness.tmpdir()
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(config(http("slow", t.url("/delay/300"), timeout="2s", failure_threshold=1),
                         tcp("chatty", "127.0.0.1:%d" % t.port, period="50ms")), f)
    proc = subprocess.Popen([harness.PROBED, "-l", "127.0.0.1:0", "-c", path, "--log-level", "debug"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=harness._clean_env(None))
    fcntl.fcntl(proc.stderr.fileno(), 1031, 4096)  # F_SETPIPE_SZ: fills within a second
    lines, reading, done = [], threading.Event(), threading.Event()
    reading.set()

    def reader():
        for raw in proc.stderr:
            lines.append(raw.decode("utf-8", "replace"))
            reading.wait()
        done.set()
    threading.Thread(target=reader, daemon=True).start()

    def logs():
        out = []
        for l in list(lines):
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
        return out
    try:
        port = int(wait_until(lambda: next((l["port"] for l in logs() if l.get("event") == "listening"),
                                           None), msg="listening"))

        def slow():
            code, body, _ = curl("http://127.0.0.1:%d/status" % port)
            eq(code, 200, "/status")
            st = json.loads(body)
            return st, probes_by_name(st)["slow"]
        before = wait_until(lambda: (lambda v: v if v[1]["healthy"] else None)(slow()),
                            msg="slow healthy")[1]
        reading.clear()  # stop reading: the daemon's next log write blocks
        wait_until(lambda: thread_wchan(proc.pid).endswith("pipe_write"), msg="the loop blocked on stderr")
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            time.sleep(end - time.monotonic())  # the loop's stall itself
        reading.set()
        st, p = wait_until(lambda: (lambda v: v if v[1]["successes"] >= before["successes"] + 2
                                    else None)(slow()), msg="slow runs again")
        assert (p["failures"], p["timeouts"], p["healthy"], st["stalls"] >= 1) == (0, 0, True, True), \
            "the loop did not run for 2.5 s (blocked mid-iteration): stalls=%d, and slow (a " \
            "healthy /delay/300 target, timeout 2s) counted failures=%d timeouts=%d, healthy=%r, " \
            "last_error=%r" % (st["stalls"], p["failures"], p["timeouts"], p["healthy"], p["last_error"])
    finally:
        reading.set()
        proc.terminate()
        try:
            proc.wait(10 * harness.SCALE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        done.wait(5)
    rep = harness._sanitizer_report("".join(lines))
    assert not rep, "sanitizer report:\n" + rep


# ------------------------------------------------------------ backoff on error

def test_backoff_on_emfile_and_recovery():
    t = start_target()
    addr = "127.0.0.1:%d" % t.port
    d = start_daemon(config(tcp("t1", addr), tcp("t2", addr),
                            backoff={"initial": "200ms", "max": "1s"}))
    for name in ("t1", "t2"):
        d.wait_log({"event": "healthy", "probe": name})
    old = exhaust_fds(d)
    try:
        # 200ms, 400ms, 800ms, 1s (max): four backoff lines within ~1.5 s
        lines = wait_count(d, "backoff", 4, probe="t1")
        for l in lines:
            eq(l.get("severity"), "WARNING", "backoff line severity")
            assert "Too many open files" in (l.get("error") or ""), "backoff error %r" % l
        eq([l.get("backoff") for l in lines[:4]], ["200ms", "400ms", "800ms", "1s"],
           "backoff doubling from initial to max")
        wait_count(d, "backoff", 5, probe="t1")
        eq(events(d, "backoff", probe="t1")[4].get("backoff"), "1s", "backoff capped at max")
        st = probes_by_name(usr1_status(d))
        for name in ("t1", "t2"):
            p = st[name]
            assert p["errors"] > 0, "%s: no errors counted: %r" % (name, p)
            assert p["state"] == "backoff" or p["restarts"] > 0, "%s never backed off: %r" % (name, p)
            eq(p["healthy"], True, "%s: health unchanged by errors" % name)
            eq((p["failures"], p["timeouts"]), (0, 0), "%s: failures, timeouts" % name)
            eq(p["last_outcome"], "error", "%s: last_outcome" % name)
        assert not events(d, "unhealthy"), "errors flipped health: %r" % events(d, "unhealthy")
    finally:
        restore_fds(d, old)
    wait_status_reachable(d)
    p = wait_probe(d, "t1", lambda p: p["last_outcome"] == "success" and p["restarts"] > 0,
                   what="t1 recovers after the fd limit is raised")
    eq(p["healthy"], True, "t1 healthy after recovery")
    first = p
    p = wait_probe(d, "t1", lambda p: p["successes"] >= first["successes"] + 3,
                   what="t1 runs normally")
    eq(p["errors"], first["errors"], "no new errors once fds are available")
    assert p["state"] != "backoff", "t1 still in backoff: %r" % p
    eq(p["failures"], 0, "t1 failures")
    m = metrics(d)
    v = metric(m, 'probed_probe_restarts_total{probe="t1",type="tcp"}')
    assert v is not None and v > 0, "probed_probe_restarts_total for t1: %r" % v


def test_emfile_in_http_probe_is_error_not_failure():
    """README "Lifecycle": an attempt the daemon could not run (EMFILE) is an `error`: target health
    untouched, backoff. For an http probe libcurl's socket() fails inside the multi
    handle."""
    t = start_target()
    d = start_daemon(config(http("h", t.url("/status/200")),
                            backoff={"initial": "200ms", "max": "1s"}))
    d.wait_log({"event": "healthy", "probe": "h"})
    wait_probe(d, "h", lambda p: p["attempts"] >= 3)
    old = exhaust_fds(d)
    try:
        p = wait_until(lambda: (lambda p: p if p["errors"] + p["failures"] + p["timeouts"] > 0
                                else None)(probes_by_name(usr1_status(d))["h"]),
                       timeout=10, interval=0.3, msg="an attempt of h under EMFILE")
    finally:
        restore_fds(d, old)
    problems = []
    if p["failures"] or p["timeouts"]:
        problems.append("EMFILE counted as failure/timeout (failures=%d timeouts=%d "
                        "last_error=%r)" % (p["failures"], p["timeouts"], p["last_error"]))
    if p["healthy"] is not True:
        problems.append("EMFILE flipped health to %r" % p["healthy"])
    if p["errors"] == 0:
        problems.append("no error outcome counted")
    bad = events(d, "unhealthy", probe="h")
    if bad:
        problems.append("unhealthy line: %r" % bad[0])
    assert not problems, "; ".join(problems) + "; view: %s" % json.dumps(p)


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile_status_server_no_spin_no_log_flood():
    """Out of fds, one status-server client waiting to be accepted must not make the
    daemon burn a CPU and write hundreds of thousands of log lines a second (libmicrohttpd
    busy-waits on accept() and logs each EMFILE)."""
    t = start_target()
    d = start_daemon(config(tcp("t1", "127.0.0.1:%d" % t.port)))
    d.wait_log({"event": "healthy", "probe": "t1"})
    size0 = os.path.getsize(d.stderr_path)
    old = exhaust_fds(d)
    try:
        client = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--max-time", "5",
                                   d.url("/livez")], stdout=subprocess.DEVNULL)
        c0, t0 = cpu_seconds(d.pid), time.monotonic()
        window = 0.5
        while time.monotonic() < t0 + window:
            time.sleep(t0 + window - time.monotonic())  # the window under EMFILE itself
        cpu = cpu_seconds(d.pid) - c0
        grown = os.path.getsize(d.stderr_path) - size0
    finally:
        restore_fds(d, old)
    client.wait(10)
    with open(d.stderr_path, "rb") as f:
        f.seek(size0)
        lines = f.read().count(b'"event":"http"')
    assert lines <= 20 and cpu < 0.6 * window, \
        "under EMFILE with one pending status client, in %.1fs: %d status-server log lines " \
        "(%d bytes of log), %.2fs CPU" % (window, lines, grown, cpu)


def test_status_shows_running_attempt():
    """/status `state` is `running` while an attempt is in flight (README "Lifecycle", "HTTP endpoints"), not the
    state of the last published snapshot."""
    t = start_target()
    d = start_daemon(config(http("h", t.url("/hang"), timeout="5s", period="10s")))
    wait_probe(d, "h", lambda p: p["state"] == "running", timeout=2,
               what="state running during the first (hung) attempt")


# ------------------------------------------------------------ shutdown

def test_shutdown_during_backoff():
    t = start_target()
    addr = "127.0.0.1:%d" % t.port
    d = start_daemon(config(tcp("t1", addr), tcp("t2", addr), tcp("t3", addr),
                            backoff={"initial": "200ms", "max": "1s"}),
                     args=["--log-level", "debug"])
    for name in ("t1", "t2", "t3"):
        d.wait_log({"event": "healthy", "probe": name})
    exhaust_fds(d)
    wait_count(d, "backoff", 2, probe="t3")
    d.signal(signal.SIGTERM)
    rc, took = wait_exit_within(d, 2)
    eq(rc, 0, "exit status")
    assert took < 2 * harness.SCALE, "exit took %.2fs (drain 0s)" % took
    tail = after(d, "draining")
    eq(attempts_after_draining(d), [], "attempts (not cancelled) after draining")
    eq([l for l in tail if l.get("event") in ("backoff", "healthy", "unhealthy", "stall")], [],
       "lifecycle lines after draining")


def test_shutdown_during_hung_attempts():
    t = start_target()
    names = ["h%d" % i for i in range(6)]
    d = start_daemon(config(*[http(n, t.url("/hang"), timeout="30s", period="1s") for n in names],
                            tcp("ok", "127.0.0.1:%d" % t.port)),
                     args=["--log-level", "debug"])
    wait_until(lambda: all(p["state"] == "running" for p in status(d)["probes"]
                           if p["name"] in names), msg="every /hang attempt in flight")
    d.signal(signal.SIGTERM)
    rc, took = wait_exit_within(d, 2)
    eq(rc, 0, "exit status")
    assert took < 2 * harness.SCALE, "exit took %.2fs (drain 0s)" % took
    eq(attempts_after_draining(d), [], "attempts (not cancelled) after draining")
    for n in names:
        c = [l for l in d.logs() if l.get("event") == "attempt" and l.get("probe") == n]
        assert c and c[-1].get("outcome") == "cancelled", "%s: last attempt %r" % (n, c[-1:])
        assert all(l.get("outcome") == "cancelled" for l in c), "%s: %r" % (n, c)


def test_second_signal_during_drain_exits_at_once():
    t = start_target()
    d = start_daemon(config(http("a", t.url("/status/200")), http("h", t.url("/hang"),
                                                                  timeout="30s"),
                            drain="10s"))
    d.wait_log({"event": "healthy", "probe": "a"})
    d.signal(signal.SIGTERM)
    d.wait_log({"event": "draining"})
    code, body, _ = curl(d.url("/readyz"))
    eq(code, 503, "/readyz while draining")
    assert "draining" in body, "/readyz body while draining: %r" % body
    assert d.alive(), "exited before the 10 s drain"
    d.signal(signal.SIGINT)
    rc, took = wait_exit_within(d, 2)
    eq(rc, 0, "exit status after a second signal")
    assert took < 2 * harness.SCALE, "second signal: exit took %.2fs" % took


def test_sigterm_queued_while_frozen_starts_nothing():
    """SIGTERM arrives while the daemon is stopped and an attempt's deadline passes
    during the freeze: on SIGCONT the daemon sees the stall and the signal in one batch.
    README "Signals": nothing is scheduled or restarted once SIGTERM arrives, even by a timer or a
    completion that was already queued; so no attempt is re-run for the stall."""
    t = start_target()
    d = start_daemon(config(http("slow", t.url("/delay/1500"), timeout="1s", period="100ms",
                                 startup_period="100ms", failure_threshold=5)),
                     args=["--log-level", "debug"])
    wait_probe(d, "slow", lambda p: p["attempts"] >= 2)
    d.signal(signal.SIGSTOP)
    try:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            time.sleep(end - time.monotonic())  # the freeze, longer than timeout + threshold
        os.kill(d.pid, signal.SIGTERM)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    rc, took = wait_exit_within(d, 2)
    eq(rc, 0, "exit status")
    logs = d.logs()
    i = next((k for k, l in enumerate(logs) if l.get("event") == "draining"), None)
    assert i is not None, "no draining line"
    rerun = [l for l in logs if l.get("event") == "stall" and l.get("rerun") not in (None, "0")]
    assert not rerun, "attempts re-run for a stall although SIGTERM was already pending: %r" % rerun
    eq(attempts_after_draining(d), [], "attempts (not cancelled) after draining")


# ------------------------------------------------------------ SIGUSR1

def test_sigusr1_logs_status_once():
    t = start_target()
    d = start_daemon(config(http("a", t.url("/status/200")), tcp("b", "127.0.0.1:%d" % t.port)))
    for name in ("a", "b"):
        d.wait_log({"event": "healthy", "probe": name})
    d.signal(signal.SIGUSR1)
    line = d.wait_log({"event": "status"})
    eq(line.get("severity"), "INFO", "status line severity")
    st = json.loads(line["status"]) if isinstance(line.get("status"), str) else line.get("status")
    assert isinstance(st, dict), "status field is not a JSON object: %r" % line
    eq(sorted(p["name"] for p in st["probes"]), ["a", "b"], "probes in the status line")
    for p in st["probes"]:
        for k in ("state", "healthy", "attempts", "failures", "cancellations", "errors", "restarts"):
            assert k in p, "status line probe lacks %s: %r" % (k, p)
    # something later in the log proves the daemon moved on; still exactly one status line
    d.signal(signal.SIGHUP)
    d.wait_log({"event": "reload"})
    eq(len(events(d, "status")), 1, "status lines for one SIGUSR1")



def test_sigusr1_logs_full_status_of_many_probes():
    """README "Signals": SIGUSR1 logs the *full* status once, also with more probes than fit in
    one LOG_LINE_MAX (8 KiB) line: then the probes are split over several "status"
    lines, none truncated, each a parseable status object, together every probe once."""
    t = start_target()
    names = ["probe-with-a-rather-long-name-%02d" % i for i in range(30)]
    d = start_daemon(config(*[tcp(n, "127.0.0.1:%d" % t.port, period="1s") for n in names]))
    wait_until(lambda: all(p["healthy"] for p in status(d)["probes"]), msg="all probes healthy")
    d.signal(signal.SIGUSR1)

    def seen():
        out = []
        for line in events(d, "status"):
            assert not line.get("truncated"), \
                "a SIGUSR1 status line was truncated (%d bytes of status)" % len(line.get("status", ""))
            st = json.loads(line["status"]) if isinstance(line["status"], str) else line["status"]
            out += [p["name"] for p in st["probes"]]
        return out
    wait_until(lambda: len(seen()) >= len(names), msg="every probe in the SIGUSR1 status lines")
    eq(sorted(seen()), sorted(names), "probes in the SIGUSR1 status (each once)")


if __name__ == "__main__":
    harness.main()
