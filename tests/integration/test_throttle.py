"""Integration tests of probed under Cloud Run's CPU model (README, "Freezes and CPU
throttling"): timeouts count awake time, answers reflect the present, a stuck loop is
never silent, and the loop's own work is never taken for a freeze.

The throttle simulator freezes the real daemon (SIGSTOP) except for short running
windows, each opened the way request-based CPU allocation opens them: a "platform"
request (GET /livez, as Cloud Run's liveness probe) arriving right after the instance
gets CPU (SIGCONT). Window lengths and gaps are parameters. The only fixed waits are the
frozen gaps and running windows themselves (the point of these tests); everything else
polls with deadlines. The watchdog and busy cases use the test build of the daemon
(TOOLS/probed-hooks: SIGUSR2 makes its loop thread spin), never the shipped binary."""

import contextlib
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (config, curl, eq, http, probe, start_daemon, start_target, status, tcp, wait_probe,  # noqa: E402
                     wait_until)



def hold(seconds):
    """Lets `seconds` of wall time pass (a window or a gap of the simulator)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(left)


class Throttle:
    """Request-based CPU allocation, simulated: frozen except for windows of `window` s
    every `gap` s; each window opens with a platform request for `path` whose answer is
    recorded as (seconds since start, status, body)."""

    def __init__(self, d, window, gap, path="/livez"):
        self.d, self.window, self.gap, self.path = d, window, gap, path
        self.answers = []
        self.awake = 0.0
        self.t0 = time.monotonic()
        os.kill(d.pid, signal.SIGSTOP)

    def step(self):
        """One gap, then one window; returns the platform request's answer."""
        hold(self.gap)
        start = time.monotonic()
        os.kill(self.d.pid, signal.SIGCONT)
        try:
            r = curl(self.d.url(self.path), timeout=5)
            self.answers.append((round(start - self.t0, 3), r[0], r[1]))
            hold(self.window - (time.monotonic() - start))
        finally:
            self.awake += time.monotonic() - start
            os.kill(self.d.pid, signal.SIGSTOP)
        return self.answers[-1]

    def until(self, pred, windows, what):
        """Steps until pred(answer) holds, at most `windows` windows."""
        for _ in range(windows):
            a = self.step()
            if pred(a):
                return a
        raise AssertionError("%s: not seen in %d windows (%.1f s awake); answers %s"
                             % (what, windows, self.awake, self.answers[-8:]))

    def stop(self):
        os.kill(self.d.pid, signal.SIGCONT)


@contextlib.contextmanager
def throttled(d, window, gap):
    t = Throttle(d, window, gap)
    try:
        yield t
    finally:
        t.stop()


def liveness_config(url, **kw):
    """A tcp probe for startup, the probe under test for liveness only: /livez turns 503
    only when the probe under test is unhealthy."""
    t = dict(timeout="300ms", period="400ms", failure_threshold=2)
    t.update(kw)
    return config(tcp("port", url.split("/")[2], scopes=["startup"]),
                  http("api", url, scopes=["liveness"], **t))


def test_throttled_hung_app_is_reported():
    """An app that accepts and never answers, probed only in 150 ms windows every 600 ms:
    each attempt's 300 ms timeout is reached on awake time, so /livez turns 503."""
    t = start_target()
    d = start_daemon(liveness_config(t.url("/hang")))
    wait_until(lambda: status(d)["started"], msg="started")
    with throttled(d, 0.15, 0.6) as th:
        a = th.until(lambda a: a[1] == 503, 40, "/livez 503 for a hung app")
    p = probe(d, "api")
    assert p["timeouts"] >= 2, "timeouts counted: %r" % p
    eq(p["failures"], 0, "failures (a hung app times out)")
    print("INFO hung app: /livez 503 after %.1f s wall, %.2f s awake, %d windows"
          % (a[0], th.awake, len(th.answers)))


def test_throttled_dead_app_is_reported():
    """An app that is gone (connection refused), probed only in windows: /livez 503."""
    t = start_target()
    d = start_daemon(liveness_config(t.url("/health")))
    wait_until(lambda: status(d)["started"], msg="started")
    wait_probe(d, "api", lambda p: p["healthy"] is True, what="api healthy")
    port = t.port
    t.stop()
    wait_until(lambda: curl("http://127.0.0.1:%d/" % port, timeout=1)[0] == 0, msg="target gone")
    with throttled(d, 0.15, 0.6) as th:
        a = th.until(lambda a: a[1] == 503, 20, "/livez 503 for a dead app")
    p = probe(d, "api")
    assert p["failures"] >= 2, "failures counted: %r" % p
    print("INFO dead app: /livez 503 after %.1f s wall, %.2f s awake, %d windows"
          % (a[0], th.awake, len(th.answers)))


def test_throttled_slow_app_is_never_failed():
    """An app whose answer takes 400 ms, longer than one 150 ms window: probed sees the
    answer in a later window; its 1 s timeout counts awake time only, so nothing fails."""
    t = start_target()
    d = start_daemon(liveness_config(t.url("/delay/400"), timeout="1s", period="300ms", failure_threshold=1))
    wait_probe(d, "api", lambda p: p["healthy"] is True, what="api healthy")
    before = probe(d, "api")
    with throttled(d, 0.15, 0.7) as th:
        for _ in range(16):
            th.step()
    p = wait_probe(d, "api", lambda p: p["successes"] >= before["successes"] + 3,
                   what="successes under throttling")
    eq((p["failures"], p["timeouts"], p["healthy"]), (0, 0, True), "failures, timeouts, healthy")
    eq([a for a in th.answers if a[1] != 200], [], "platform answers other than 200")
    st = status(d)
    assert st["stalls"] >= 8, "stalls seen: %r" % st["stalls"]


def test_outage_during_freeze_is_seen_after_thaw():
    """The app dies while probed is frozen: in the first windows after the thaw the
    attempts fail and the platform's /livez reflects it (failure_threshold 1)."""
    t = start_target()
    d = start_daemon(liveness_config(t.url("/health"), period="100ms", failure_threshold=1))
    wait_probe(d, "api", lambda p: p["healthy"] is True, what="api healthy")
    with throttled(d, 0.3, 0.6) as th:
        th.step()
        eq(th.answers[-1][1], 200, "/livez before the outage")
        os.kill(d.pid, signal.SIGSTOP)  # already frozen: the outage begins during the freeze
        t.stop()
        a = th.until(lambda a: a[1] == 503, 3, "/livez 503 after an outage during a freeze")
    eq(probe(d, "api")["healthy"], False, "api healthy")
    print("INFO outage during a freeze: /livez 503 in window %d after the thaw" % (len(th.answers) - 1))


def test_watchdog_trips_on_a_stuck_loop():
    """The loop thread spins for 4 s (watchdog 1s): the verdict endpoints answer 503
    'probed: event loop stuck for <N>s' and one ERROR line is logged; when the loop runs
    again, /livez is 200 again."""
    t = start_target()
    with harness.hooks_binary():
        d = start_daemon(config(tcp("port", "127.0.0.1:%d" % t.port), watchdog="1s"),
                         env={"PROBED_TEST_SPIN_MS": "4000"})
    wait_until(lambda: curl(d.url("/livez"))[0] == 200, msg="/livez 200")
    d.signal(signal.SIGUSR2)
    r = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(curl(d.url("/livez"), timeout=5)),
                   timeout=10, msg="/livez 503 while the loop is stuck")
    assert r[1].startswith("probed: event loop stuck for "), "/livez body %r" % r[1]
    eq(curl(d.url("/readyz"), timeout=5)[0], 503, "/readyz while stuck")
    wait_until(lambda: curl(d.url("/livez"), timeout=5)[0] == 200, timeout=15, msg="/livez 200 after the spin")
    stuck = [l for l in d.logs() if l.get("event") == "watchdog" and l.get("severity") == "ERROR"]
    eq(len(stuck), 1, "watchdog log lines (%r)" % stuck)
    eq(stuck[0].get("severity"), "ERROR", "watchdog line severity")


def test_watchdog_never_trips_on_a_frozen_process():
    """The whole process frozen 3 s (watchdog 1s): the status server was frozen too, so
    after the thaw the loop gets its grace wait and /livez answers 200."""
    t = start_target()
    d = start_daemon(config(tcp("port", "127.0.0.1:%d" % t.port), watchdog="1s"))
    wait_until(lambda: curl(d.url("/livez"))[0] == 200, msg="/livez 200")
    d.signal(signal.SIGSTOP)
    try:
        hold(3)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    eq(curl(d.url("/livez"), timeout=5)[:2], (200, "ok\n"), "/livez right after the thaw")
    eq([l for l in d.logs() if l.get("event") == "watchdog"], [], "watchdog lines")


def test_busy_loop_is_not_a_stall():
    """The loop thread runs 1.5 s without returning (stall_threshold 500ms): a busy
    wake-up, logged once as loop_busy and counted in probed_loop_busy_total; no stall,
    and the attempt in flight is neither cancelled nor failed."""
    t = start_target()
    with harness.hooks_binary():
        d = start_daemon(config(http("slow", t.url("/delay/200"), timeout="5s", period="100ms")),
                         env={"PROBED_TEST_SPIN_MS": "1500"})
    wait_probe(d, "slow", lambda p: p["healthy"] is True, what="slow healthy")
    # The loop thread (the main thread) first in line for the CPU: on a loaded machine a
    # spinning thread that waits for a core has no CPU, which is frozen time by design.
    try:
        os.setpriority(os.PRIO_PROCESS, d.pid, -10)
    except OSError:
        pass  # not root: a loaded machine may then see a stall
    d.signal(signal.SIGUSR2)
    busy = d.wait_log({"event": "loop_busy"})
    eq(busy.get("severity"), "WARNING", "loop_busy severity")
    p = wait_probe(d, "slow", lambda p: p["successes"] >= 5, what="attempts after the busy loop")
    eq((p["cancellations"], p["failures"], p["timeouts"]), (0, 0, 0), "cancellations, failures, timeouts")
    st = status(d)
    eq(st["stalls"], 0, "stalls")
    m = curl(d.url("/metrics"))[1]
    assert "\nprobed_loop_busy_total 1\n" in m, "probed_loop_busy_total: %r" % [
        l for l in m.splitlines() if "busy" in l]


if __name__ == "__main__":
    harness.main()
