"""Integration-test harness for probed: real daemon, real targets, real curl.

Every tests/integration/test_*.py file imports this module, defines functions named
test_*, and ends with:

    if __name__ == "__main__":
        harness.main()

Run a file with /usr/bin/python3 (tests/integration/run.sh does, for every file):

    PROBED=build/probed TOOLS=build/tests /usr/bin/python3 tests/integration/test_core.py [NAME...]

NAME selects tests by exact name ("test_http_healthy" or "http_healthy"); with no NAME
every test_* runs, in file order. Each test runs in isolation: whatever it started is
stopped afterwards. Output: "PASS name" / "FAIL name: reason" per test, then exactly
"N passed, N failed"; the exit status is 1 when any failed.

Environment
    PROBED          path of the probed binary (default build/probed)
    TOOLS           directory holding the test tools, e.g. `target` (default build/tests)
    PROBED_WRAPPER  command prepended to every probed invocation, split on spaces, e.g.
                    "valgrind --leak-check=full --error-exitcode=99". When set, every
                    harness deadline is multiplied by 10 (SCALE). When its first word is
                    valgrind, the harness adds --log-file=<tmp>/valgrind.%p.log and fails
                    the test if a log reports errors (ERROR SUMMARY > 0) or if the process
                    exits with status 99.
    PROBED_TIMEOUT_SCALE  overrides SCALE (e.g. 3 for sanitizer builds).
    HARNESS_KEEP    set to 1 to keep temporary directories (their path is printed on failure).

API (all deadlines in seconds, already multiplied by SCALE inside the harness)
    SCALE                       the deadline multiplier (1, or 10 under PROBED_WRAPPER)

    start_target(args=()) -> Target
        Starts TOOLS/target on an ephemeral 127.0.0.1 port. Target.port (int),
        Target.url(path="/") -> "http://127.0.0.1:<port><path>", Target.stop().
        Target paths: /status/<code>[?body=T][&location=L] (L may be empty), /health (or /healthz), /control/health?status=C&body=T,
        /delay/<ms>[/<code>], /hang, /close, /reset, /redirect/<n>[?to=URL], /loop,
        /body/<bytes>, /framed/{chunked,eof,continue}[?body=T] (a 200
        whose body is chunked, ends at the close, or follows a 100 Continue), /echo (the request head as the body), /only/<METHOD> (200 for
        that method, else 405), /absent/<Header-Name> (200 when the request lacks that
        header, else 417), /count ("requests=N connections=M\\n"), /stats[?reset]
        ("open=N max_open=M\\n": connections open now, including this one, and the most
        open at once since start or the last ?reset). The target keeps
        HTTP/1.1 connections alive unless the client sends `Connection: close`.
    start_https(status=200, body="secure\\n") -> HttpsServer
        A python3 ssl server with a fresh self-signed certificate (.cert is its path), in a
        thread of the test process; .port, .url(path) -> "https://127.0.0.1:<port><path>",
        .stop(). Stopped at teardown like targets.
    free_port() -> int
        A 127.0.0.1 port that was free a moment ago (for "nothing listens there yet").
    hooks_binary()
        Context manager: start_daemon runs TOOLS/probed-hooks inside it, the test build of
        the daemon whose loop thread SIGUSR2 spins for $PROBED_TEST_SPIN_MS.

    start_daemon(config=None, args=(), env=None, listen="127.0.0.1:0",
                 wait_listening=True, json_logs=True) -> Daemon
        Runs `$PROBED -l <listen> [-c <file>] args...`; config is a dict written to a temp
        JSON file (or a str written verbatim). env adds/overrides environment variables
        (a value of None removes one); PROBED_CONFIG, PROBED_LISTEN and proxy variables
        are removed unless given. stderr goes to a temp file. With wait_listening the call
        returns once the "listening" log line appeared and Daemon.port is set (raises
        AssertionError if the daemon exits first). json_logs=False skips the
        "every stderr line is JSON" check at teardown (for --log-format text).
    Daemon.port, Daemon.pid, Daemon.url(path="/"), Daemon.config_path
    Daemon.logs() -> list of dicts        JSON log lines written so far
    Daemon.wait_log(pred, timeout=10) -> dict
        pred is a callable(dict)->bool or a dict of fields that must all be equal;
        returns the first matching line, or raises AssertionError listing the logs.
    Daemon.signal(sig)                    e.g. signal.SIGTERM
    Daemon.wait_exit(timeout=10) -> int   exit code (negative: killed by that signal)
    Daemon.alive() -> bool
    Daemon.stderr_text() -> str
    Daemon.stop()                         SIGTERM, then SIGKILL past a deadline

    run_probed(args, env=None, timeout=10, input=None) -> Result
        Runs probed to completion (e.g. --check-config, check URL): Result.rc,
        Result.stdout, Result.stderr. Its stderr is scanned for sanitizer reports.

    curl(url, *extra_args, timeout=5) -> CurlResult
        The real curl CLI: curl -s -S --noproxy '*' -D hdr -o body -w '%{http_code}'
        --max-time <timeout> [extra_args] url. A 3-tuple (status:int, body:str,
        headers:dict); status 0 means curl failed (CurlResult.error holds its stderr).
        headers has case-insensitive keys (the last header block when redirects were
        followed). With "-I"/"--head" among extra_args the body is "".
    promtool_check(text) -> (rc, output)  `promtool check metrics` on text
    wait_until(fn, timeout=10, interval=0.02, msg=None)
        Polls fn() until it returns a truthy value and returns that value; raises
        AssertionError (with msg and the last value) at the deadline.
    eq(actual, expected, what="")          assert with a readable message
    tmpdir() -> str                        a temp dir removed after the test

Teardown (after every test): each daemon is stopped (SIGTERM, then SIGKILL after
5 s * SCALE), each target stopped. A daemon's stderr containing a sanitizer report
("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "==ERROR") or, with
json_logs, any non-empty line that is not a JSON object (except the "probed: ..." line
of a daemon that exited 2 on a usage or config error), fails the test; so does a
run_probed() stderr with a sanitizer report.
"""

import contextlib
import inspect
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

PROBED = os.path.abspath(os.environ.get("PROBED", "build/probed"))
TOOLS = os.path.abspath(os.environ.get("TOOLS", "build/tests"))
WRAPPER = shlex.split(os.environ.get("PROBED_WRAPPER", ""))
SCALE = float(os.environ.get("PROBED_TIMEOUT_SCALE", "10" if WRAPPER else "1"))
KEEP = os.environ.get("HARNESS_KEEP") == "1"

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "==ERROR")
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY", "no_proxy", "NO_PROXY")

# Resources of the running test, released by _teardown().
_daemons = []
_targets = []
_tmpdirs = []
_problems = []


def tmpdir():
    d = tempfile.mkdtemp(prefix="probed-it-")
    _tmpdirs.append(d)
    return d


def eq(actual, expected, what=""):
    if actual != expected:
        raise AssertionError("%sexpected %r, got %r" % (what + ": " if what else "", expected, actual))


def wait_until(fn, timeout=10, interval=0.02, msg=None):
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %gs waiting for %s (last value: %r)"
                                 % (timeout * SCALE, msg or getattr(fn, "__name__", "condition"),
                                    last))
        time.sleep(interval)


def _sanitizer_report(text):
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[max(0, i - 200):i + 1500]
    return None


def _wrapper_cmd(d):
    """PROBED_WRAPPER with a per-process valgrind log file in d."""
    if not WRAPPER:
        return []
    cmd = list(WRAPPER)
    if os.path.basename(cmd[0]) == "valgrind" and not any(a.startswith("--log-file") for a in cmd):
        cmd.insert(1, "--log-file=" + os.path.join(d, "valgrind.%p.log"))
    return cmd


def _valgrind_problems(d):
    out = []
    for name in sorted(os.listdir(d)):
        if name.startswith("valgrind.") and name.endswith(".log"):
            with open(os.path.join(d, name), errors="replace") as f:
                text = f.read()
            for line in text.splitlines():
                if "ERROR SUMMARY:" in line and "ERROR SUMMARY: 0 errors" not in line:
                    out.append("valgrind reported errors (%s):\n%s" % (name, text[-6000:]))
                    break
    return out


def _clean_env(env):
    e = dict(os.environ)
    for k in PROXY_VARS + ("PROBED_CONFIG", "PROBED_LISTEN", "PROBED_TARGET_PORT"):
        e.pop(k, None)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    return e


# ---------------------------------------------------------------- targets

class Target:
    def __init__(self, args=()):
        self.proc = subprocess.Popen([os.path.join(TOOLS, "target"), "--port", "0"] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _targets.append(self)
        r, _, _ = select.select([self.proc.stdout], [], [], 5 * SCALE)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("PORT "):
            self.stop()
            raise AssertionError("target did not print its port (got %r)" % line)
        self.port = int(line.split()[1])

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start_target(args=()):
    return Target(args)


class HttpsServer:
    """A python3 TLS server (self-signed certificate made with openssl) in a thread,
    answering every GET/HEAD with `status` and `body` (and `Location: location` when
    given)."""

    def __init__(self, status=200, body="secure\n", location=None):
        import http.server
        import ssl
        import threading
        d = tmpdir()
        self.cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", self.cert],
                       check=True, capture_output=True, timeout=60)
        payload = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        _targets.append(self)

    def url(self, path="/"):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def start_https(status=200, body="secure\n", location=None):
    return HttpsServer(status, body, location)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- daemon


@contextlib.contextmanager
def hooks_binary():
    """start_daemon runs the test build of the daemon (SIGUSR2 spins its loop thread)."""
    global PROBED
    saved = PROBED
    PROBED = os.path.join(TOOLS, "probed-hooks")
    try:
        yield
    finally:
        PROBED = saved

class Daemon:
    def __init__(self, config=None, args=(), env=None, listen="127.0.0.1:0",
                 wait_listening=True, json_logs=True):
        self.dir = tmpdir()
        self.json_logs = json_logs
        self.port = None
        self.config_path = None
        cmd = _wrapper_cmd(self.dir) + [PROBED]
        if listen is not None:
            cmd += ["-l", listen]
        if config is not None:
            self.config_path = os.path.join(self.dir, "config.json")
            self.write_config(config)
            cmd += ["-c", self.config_path]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self.stderr_path = os.path.join(self.dir, "stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=_clean_env(env))
        self.pid = self.proc.pid
        self.checked = False
        _daemons.append(self)
        if wait_listening:
            def listening():
                for line in self.logs():
                    if line.get("event") == "listening":
                        return line
                if self.proc.poll() is not None:
                    raise AssertionError("probed exited with %d before listening; stderr:\n%s"
                                         % (self.proc.returncode, self.stderr_text()[-3000:]))
                return None
            line = wait_until(listening, timeout=10, msg="the 'listening' log line")
            port = str(line.get("port", ""))
            if not port.isdigit():
                raise AssertionError("listening line has no numeric port: %r" % line)
            self.port = int(port)

    def write_config(self, config):
        """Rewrites the config file (for reload tests); a dict is dumped as JSON."""
        text = config if isinstance(config, str) else json.dumps(config, indent=1)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def logs(self):
        out = []
        for line in self.stderr_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def wait_log(self, pred, timeout=10):
        if isinstance(pred, dict):
            want = pred
            pred = lambda l: all(l.get(k) == v for k, v in want.items())
            desc = "log line matching %r" % (want,)
        else:
            desc = "log line matching %s" % getattr(pred, "__name__", "predicate")

        def find():
            for line in self.logs():
                if pred(line):
                    return line
            return None
        try:
            return wait_until(find, timeout=timeout, msg=desc)
        except AssertionError as e:
            raise AssertionError("%s; stderr so far:\n%s" % (e, self.stderr_text()[-4000:]))

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError("probed (pid %d) still running after %gs"
                                 % (self.proc.pid, timeout * SCALE))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                _problems.append("probed pid %d ignored SIGTERM for %gs, killed"
                                 % (self.proc.pid, 5 * SCALE))

    def problems(self):
        out = []
        self._stderr.close()
        text = self.stderr_text()
        rep = _sanitizer_report(text)
        if rep:
            out.append("sanitizer report on probed's stderr:\n" + rep)
        elif self.json_logs:
            for line in text.splitlines():
                if not line.strip():
                    continue
                # exit 2 (usage/config error) is one plain-text line (README "Command line")
                if self.proc.returncode == 2 and line.startswith("probed: "):
                    continue
                try:
                    ok = isinstance(json.loads(line), dict)
                except ValueError:
                    ok = False
                if not ok:
                    out.append("non-JSON line on probed's stderr: %r" % line[:300])
                    break
        out += _valgrind_problems(self.dir)
        if WRAPPER and self.proc.returncode == 99:
            out.append("probed exited 99 under %s (errors reported)" % WRAPPER[0])
        return out


def start_daemon(config=None, args=(), env=None, listen="127.0.0.1:0", wait_listening=True,
                 json_logs=True):
    return Daemon(config, args, env, listen, wait_listening, json_logs)


class Result:
    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr

    def __repr__(self):
        return "Result(rc=%r, stdout=%r, stderr=%r)" % (self.rc, self.stdout[:500], self.stderr[:500])


def run_probed(args, env=None, timeout=10, input=None):
    d = tmpdir()
    cmd = _wrapper_cmd(d) + [PROBED] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, env=_clean_env(env),
                           timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not exit within %gs" % (" ".join(cmd), timeout * SCALE))
    rep = _sanitizer_report(p.stderr)
    if rep:
        _problems.append("sanitizer report from %s:\n%s" % (" ".join(args), rep))
    _problems.extend(_valgrind_problems(d))
    if WRAPPER and p.returncode == 99:
        _problems.append("probed %s exited 99 under %s" % (" ".join(map(str, args)), WRAPPER[0]))
    return Result(p.returncode, p.stdout, p.stderr)


# ---------------------------------------------------------------- curl

class Headers(dict):
    """dict with case-insensitive keys (stored lower-case)."""

    def __setitem__(self, k, v):
        super().__setitem__(k.lower(), v)

    def __getitem__(self, k):
        return super().__getitem__(k.lower())

    def __contains__(self, k):
        return super().__contains__(k.lower())

    def get(self, k, default=None):
        return super().get(k.lower(), default)


class CurlResult(tuple):
    def __new__(cls, status, body, headers, error=""):
        r = super().__new__(cls, (status, body, headers))
        r.error = error
        return r

    status = property(lambda self: self[0])
    body = property(lambda self: self[1])
    headers = property(lambda self: self[2])


def curl(url, *extra_args, timeout=5):
    d = tempfile.mkdtemp(prefix="probed-curl-")
    try:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = ["curl", "-s", "-S", "--noproxy", "*", "-D", hdr, "-o", body, "-w", "%{http_code}",
               "--max-time", "%g" % (timeout * SCALE)] + [str(a) for a in extra_args] + [url]
        p = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(None),
                           timeout=timeout * SCALE + 5)
        status = int(p.stdout.strip() or 0) if p.stdout.strip().isdigit() else 0
        headers = Headers()
        if os.path.exists(hdr):
            with open(hdr, "rb") as f:
                blocks = f.read().decode("latin-1").replace("\r\n", "\n").split("\n\n")
            blocks = [b for b in blocks if b.strip()]
            if blocks:
                for line in blocks[-1].split("\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip()] = v.strip()
        text = ""
        if os.path.exists(body) and not ("-I" in extra_args or "--head" in extra_args):
            with open(body, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        return CurlResult(status, text, headers, p.stderr if p.returncode else "")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


# ---------------------------------------------------------------- runner

def _teardown():
    problems = list(_problems)
    for d in _daemons:
        d.stop()
        if not d.checked:
            d.checked = True
            problems += d.problems()
    for t in _targets:
        t.stop()
    kept = []
    for d in _tmpdirs:
        if KEEP:
            kept.append(d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    del _daemons[:], _targets[:], _tmpdirs[:], _problems[:]
    return problems, kept


class _TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TestTimeout("test exceeded its overall deadline")



# ---------------------------------------------------------------- config helpers

FAST = {"period": "100ms", "timeout": "1s", "startup_period": "50ms",
        "success_threshold": 1, "failure_threshold": 2}


def config(*probes, **top):
    """A config dict: FAST defaults, the given probes, top-level keys from top."""
    c = {"defaults": dict(FAST), "probes": list(probes)}
    c.update(top)
    return c


def http(name, url, **kw):
    p = {"name": name, "type": "http", "url": url}
    p.update(kw)
    return p


def tcp(name, address, **kw):
    p = {"name": name, "type": "tcp", "address": address}
    p.update(kw)
    return p


def status(d):
    """The daemon's /status, parsed (asserts a 200)."""
    code, body, _ = curl(d.url("/status"))
    eq(code, 200, "/status code")
    return json.loads(body)


def probes_by_name(st):
    return {p["name"]: p for p in st["probes"]}


def probe(d, name):
    """One probe's view from /status (asserts it is there)."""
    p = probes_by_name(status(d)).get(name)
    if p is None:
        raise AssertionError("probe %r not in /status" % name)
    return p


def wait_probe(d, name, pred, what=None, timeout=10):
    """Waits until pred(probe view) holds; returns the view. The error shows the last view."""
    last = {}

    def check():
        last["p"] = probe(d, name)
        return last["p"] if pred(last["p"]) else None
    try:
        return wait_until(check, timeout=timeout, msg=what or "probe %s condition" % name)
    except AssertionError as e:
        raise AssertionError("%s; last view of %s: %s" % (e, name, json.dumps(last.get("p"))))

def main():
    mod = sys.modules["__main__"]
    tests = [(name, fn) for name, fn in vars(mod).items()
             if name.startswith("test_") and callable(fn)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    wanted = sys.argv[1:]
    if wanted:
        names = {n if n.startswith("test_") else "test_" + n for n in wanted}
        unknown = names - {n for n, _ in tests}
        if unknown and os.environ.get("HARNESS_IGNORE_UNKNOWN") != "1":
            print("unknown test(s): %s" % ", ".join(sorted(unknown)))
            print("0 passed, %d failed" % len(unknown))
            sys.exit(1)
        tests = [t for t in tests if t[0] in names]
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = 0
    for name, fn in tests:
        reason = None
        signal.alarm(int(120 * SCALE))
        try:
            fn()
        except AssertionError as e:
            reason = str(e) or traceback.format_exc()
            tb = traceback.extract_tb(e.__traceback__)
            here = [f for f in tb if f.filename == inspect.getfile(mod)]
            if here:
                reason = "line %d: %s" % (here[-1].lineno, reason)
        except BaseException as e:  # noqa: anything else is a failure too
            if isinstance(e, KeyboardInterrupt):
                raise
            reason = "%s\n%s" % (e.__class__.__name__, traceback.format_exc())
        finally:
            signal.alarm(0)
        problems, kept = _teardown()
        if problems:
            reason = "; ".join(([reason] if reason else []) + problems)
        if kept:
            reason = (reason + " (kept %s)" % ", ".join(kept)) if reason else None
        if reason is None:
            passed += 1
            print("PASS %s" % name, flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, reason), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)
