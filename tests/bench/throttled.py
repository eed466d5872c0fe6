"""The `throttled` section of `make bench` (README, "Freezes and CPU throttling"): probed
running only in short windows, as under Cloud Run's request-based CPU allocation, against
an app that is healthy, then hangs (accepts, never answers) or crashes (refused).

The simulator freezes probed (SIGSTOP) except for running windows of WINDOW_S seconds,
one every GAP_S + WINDOW_S seconds, each opened by a "platform" request (GET /livez)
right after SIGCONT; the app (a thread of this process) is never frozen. Measured per
billing mode ("request": the windows; "instance": no freezing at all):
- from the hang, and from the crash, to the first /livez 503: wall seconds and awake
  seconds (the sum of running windows since the event);
- false failures of a healthy but slow app (its answer takes longer than a window):
  failures + timeouts counted over N_SLOW_WINDOWS windows (must be 0).
Probe settings as a Cloud Run user would pick them: period 1s, timeout 1s,
failure_threshold 3.

Standalone: /usr/bin/python3 tests/bench/throttled.py [PROBED]; bench.py calls run()."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

WINDOW_S = float(os.environ.get("BENCH_THROTTLE_WINDOW", "0.2"))
GAP_S = float(os.environ.get("BENCH_THROTTLE_GAP", "1.0"))
N_SLOW_WINDOWS = int(os.environ.get("BENCH_THROTTLE_SLOW_WINDOWS", "30"))
PROBE = {"period": "1s", "timeout": "1s", "failure_threshold": 3, "startup_period": "100ms"}


class App:
    """A tiny HTTP app on 127.0.0.1: mode "ok" answers 200 after `delay` s, "hang"
    accepts and never answers, "crash" closes its listening socket (refused)."""

    def __init__(self, delay=0.0):
        self.mode, self.delay, self.held = "ok", delay, []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "hang":
                self.held.append(c)
                continue
            threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c):
        try:
            c.settimeout(5)
            c.recv(4096)
            time.sleep(self.delay)  # the app's own slowness
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except OSError:
            pass
        finally:
            c.close()

    def crash(self):
        self.mode = "crash"
        self.sock.close()


def livez(port, timeout=5.0):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/livez" % port, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def start(probed, app, tmp, name):
    cfg = {"defaults": PROBE, "probes": [
        {"name": "port", "type": "tcp", "address": "127.0.0.1:%d" % app.port, "scopes": ["startup"]},
        {"name": "api", "type": "http", "url": "http://127.0.0.1:%d/" % app.port, "scopes": ["liveness"]}]}
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    err = open(os.path.join(tmp, name + ".log"), "wb")
    p = subprocess.Popen([probed, "-l", "127.0.0.1:0", "-c", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with open(err.name) as f:
            for line in f:
                if '"listening"' in line:
                    port = int(json.loads(line)["port"])
                    while livez(port) != 200 and time.monotonic() < end:
                        time.sleep(0.02)
                    return p, port
        time.sleep(0.02)
    p.kill()
    raise RuntimeError("probed did not start")


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=5) as r:
        return {x["name"]: x for x in json.load(r)["probes"]}


def windows_until_503(p, port, limit_s=300.0):
    """Runs the window pattern until /livez answers 503; (wall s, awake s)."""
    t0, awake = time.monotonic(), 0.0
    os.kill(p.pid, signal.SIGSTOP)
    try:
        while time.monotonic() - t0 < limit_s:
            time.sleep(GAP_S)  # frozen
            w0 = time.monotonic()
            os.kill(p.pid, signal.SIGCONT)
            code = livez(port)
            rest = WINDOW_S - (time.monotonic() - w0)
            if rest > 0:
                time.sleep(rest)
            os.kill(p.pid, signal.SIGSTOP)
            awake += time.monotonic() - w0
            if code == 503:
                return time.monotonic() - t0, awake
        return None, awake
    finally:
        os.kill(p.pid, signal.SIGCONT)


def unthrottled_until_503(port, limit_s=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if livez(port) == 503:
            dt = time.monotonic() - t0
            return dt, dt
        time.sleep(0.01)
    return None, None


def one(probed, tmp, mode, event):
    app = App()
    p, port = start(probed, app, tmp, "%s-%s" % (mode, event))
    try:
        # let the first attempts pass so the app is known healthy
        end = time.monotonic() + 10
        while status(port)["api"]["healthy"] is not True and time.monotonic() < end:
            time.sleep(0.05)
        if event == "hang":
            app.mode = "hang"
        else:
            app.crash()
        if mode == "request":
            wall, awake = windows_until_503(p, port)
        else:
            wall, awake = unthrottled_until_503(port)
        return {"wall_s": wall, "awake_s": awake}
    finally:
        p.terminate()
        p.wait(10)


def slow_false_failures(probed, tmp):
    app = App(delay=WINDOW_S * 2)  # longer than one window
    p, port = start(probed, app, tmp, "slow")
    try:
        before = status(port)["api"]
        os.kill(p.pid, signal.SIGSTOP)
        try:
            for _ in range(N_SLOW_WINDOWS):
                time.sleep(GAP_S)
                w0 = time.monotonic()
                os.kill(p.pid, signal.SIGCONT)
                livez(port)
                rest = WINDOW_S - (time.monotonic() - w0)
                if rest > 0:
                    time.sleep(rest)
                os.kill(p.pid, signal.SIGSTOP)
        finally:
            os.kill(p.pid, signal.SIGCONT)
        after = status(port)["api"]
        return {"false_failures": (after["failures"] + after["timeouts"]) - (before["failures"] + before["timeouts"]),
                "successes": after["successes"] - before["successes"], "windows": N_SLOW_WINDOWS}
    finally:
        p.terminate()
        p.wait(10)


def run(probed):
    tmp = tempfile.mkdtemp(prefix="probed-throttled-")
    res = {"window_s": WINDOW_S, "gap_s": GAP_S, "probe": PROBE}
    for mode in ("request", "instance"):
        for event in ("hang", "crash"):
            res["%s_%s" % (mode, event)] = one(probed, tmp, mode, event)
    res["slow"] = slow_false_failures(probed, tmp)
    return res


def report(r):
    def f(x):
        return "-" if x is None else "%.1f" % x
    lines = ["| billing | event | /livez 503 after (wall s) | awake s |", "|---|---|---|---|"]
    for mode in ("request", "instance"):
        for event in ("hang", "crash"):
            x = r["%s_%s" % (mode, event)]
            lines.append("| %s-based | %s | %s | %s |" % (mode, event, f(x["wall_s"]), f(x["awake_s"])))
    s = r["slow"]
    lines.append("")
    lines.append("Windows of %.1f s every %.1f s of freeze; probe period 1s, timeout 1s, failure_threshold 3. "
                 "A healthy app answering in %.1f s over %d windows: %d false failures, %d successes."
                 % (r["window_s"], r["gap_s"], r["window_s"] * 2, s["windows"], s["false_failures"], s["successes"]))
    return lines


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    probed = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "build", "probed")
    r = run(probed)
    print(json.dumps(r, indent=1))
    print("\n".join(report(r)))
