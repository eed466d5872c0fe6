"""Integration tests of issue 18's small truths against the real daemon and real targets:
a reload that changes nothing but the spelling keeps every probe (README "Signals"); an
exec child holds stdin, stdout and stderr and no other descriptor, and its output keeps
NUL bytes (README "Probe kinds"); every stderr line is valid UTF-8 JSON whatever bytes
the config and the command's output hold (README "Logs"); libcurl's error texts keep
their case, and `probed check` tells a bad URL (exit 2) and oversized headers apart
(README "Command line"). See harness.py for the API."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (eq, probe, probes_by_name, run_probed, start_daemon, start_target, status, tmpdir,  # noqa: E402
                     wait_probe, wait_until)


# ------------------------------------------------------------ helpers

def events(d, event):
    return [l for l in d.logs() if l.get("event") == event]


def wait_events(d, event, n):
    return wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(events(d, event)),
                      msg="%d %r log line(s)" % (n, event))


def write_bytes(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


def strict_json_lines(raw, what):
    """Every line of raw (bytes) must be strict UTF-8 and a JSON object; returns them."""
    out = []
    for i, line in enumerate(raw.split(b"\n")):
        if not line:
            continue
        try:
            obj = json.loads(line.decode("utf-8", "strict"))
        except ValueError as e:
            raise AssertionError("%s: line %d is not UTF-8 JSON (%s): %r" % (what, i + 1, e, line[:300]))
        if not isinstance(obj, dict):
            raise AssertionError("%s: line %d is not an object: %r" % (what, i + 1, line[:300]))
        out.append(obj)
    return out


def run_probed_bytes(args, timeout=10):
    """Runs probed to completion; (exit status, stderr as bytes), so that a test can
    decode it strictly."""
    p = subprocess.run(harness._wrapper_cmd(tmpdir()) + [harness.PROBED] + args, capture_output=True,
                       timeout=timeout * harness.SCALE, env=harness._clean_env(None))
    for mark in harness.SANITIZER_MARKS:
        assert mark.encode() not in p.stderr, "sanitizer report: %r" % p.stderr[-3000:]
    return p.returncode, p.stderr


def stderr_bytes(d):
    with open(d.stderr_path, "rb") as f:
        return f.read()


class RawServer:
    """Answers every connection with the bytes of answer, then closes (a thread)."""

    def __init__(self, answer, tls=None):
        self.tls = tls  # an ssl.SSLContext: the answer goes over TLS
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                if self.tls:
                    c = self.tls.wrap_socket(c, server_side=True)
                c.recv(65536)
                c.sendall(self.answer)
            except OSError:
                pass
            c.close()

    def close(self):
        self.sock.close()


# ------------------------------------------------------------ 1. no-op reloads

def spelled(url, port, reverse):
    """One config in two spellings: the second has every object's keys in another order,
    the headers reordered, the defaults' durations respelled, and defaults written out."""
    defaults = {"period": "1s", "timeout": "1s", "startup_period": "50ms",
                "success_threshold": 2, "failure_threshold": 2}
    h = {"name": "h", "type": "http", "url": url, "headers": {"X-One": "1", "X-Two": "2"}}
    t = {"name": "t", "type": "tcp", "address": "127.0.0.1:%d" % port}
    e = {"name": "e", "type": "exec", "command": ["/bin/true"], "scopes": ["liveness", "readiness"]}
    if reverse:
        defaults = {"failure_threshold": 2, "success_threshold": 2, "startup_period": "50ms",
                    "timeout": "1000ms", "period": "1s", "initial_delay": "0s"}
        h = {"tls_verify": False, "max_body": 10240, "expect_status": "200-399", "method": "GET",
             "headers": {"X-Two": "2", "X-One": "1"}, "url": url, "type": "http", "name": "h",
             "scopes": ["readiness", "liveness", "startup"]}
        t = {"address": "127.0.0.1:%d" % port, "type": "tcp", "name": "t"}
        e = {"scopes": ["readiness", "liveness"], "command": ["/bin/true"], "type": "exec", "name": "e"}
        return {"probes": [h, t, e], "defaults": defaults}
    return {"defaults": defaults, "probes": [h, t, e]}


def readyz_codes(d, stop, codes):
    """Polls /readyz until stop is set, appending each status code (0: no answer)."""
    while not stop.is_set():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=2 * harness.SCALE)
        try:
            c.request("GET", "/readyz")
            codes.append(c.getresponse().status)
        except OSError:
            codes.append(0)
        finally:
            c.close()
        time.sleep(0.005)


def test_reload_in_another_spelling_keeps_every_probe():
    t = start_target()
    url = t.url("/status/200")
    d = start_daemon(json.dumps(spelled(url, t.port, False), indent=1))
    wait_until(lambda: all(p["healthy"] is True for p in status(d)["probes"]), msg="all healthy")
    before = probes_by_name(status(d))
    stop, codes = threading.Event(), []
    poller = threading.Thread(target=readyz_codes, args=(d, stop, codes))
    poller.start()
    try:
        d.write_config(json.dumps(spelled(url, t.port, True), indent=1))
        d.signal(signal.SIGHUP)
        line = wait_events(d, "reload", 1)[0]
        # a restarted probe (success_threshold 2, period 1s) would be unknown for a second
        wait_probe(d, "h", lambda p: p["attempts"] >= before["h"]["attempts"] + 2, what="two more attempts of h")
    finally:
        stop.set()
        poller.join()
    eq((line.get("kept"), line.get("changed"), line.get("added"), line.get("removed")),
       ("3", "0", "0", "0"), "reload line kept/changed/added/removed")
    assert codes and all(c == 200 for c in codes), "/readyz across the reload: %r" % codes
    after = probes_by_name(status(d))
    for n in ("h", "t", "e"):
        assert after[n]["attempts"] >= before[n]["attempts"], "%s was restarted: %r -> %r" % (
            n, before[n]["attempts"], after[n]["attempts"])
        eq(after[n]["last_change"], before[n]["last_change"], "%s's last_change" % n)
    # and a changed value is a change, in a header or inherited from defaults
    cfg = spelled(url, t.port, True)
    cfg["probes"][0]["headers"]["X-Two"] = "3"
    d.write_config(json.dumps(cfg))
    d.signal(signal.SIGHUP)
    line = wait_events(d, "reload", 2)[1]
    eq((line.get("kept"), line.get("changed")), ("2", "1"), "header value changed: kept/changed")
    cfg["defaults"]["failure_threshold"] = 3
    d.write_config(json.dumps(cfg))
    d.signal(signal.SIGHUP)
    line = wait_events(d, "reload", 3)[2]
    eq((line.get("kept"), line.get("changed")), ("0", "3"), "a default changed: kept/changed")


# ------------------------------------------------------------ 3. and 5. exec

def exec_config(*probes):
    return {"defaults": {"period": "100ms", "timeout": "2s", "startup_period": "50ms"},
            "probes": [{"name": n, "type": "exec", "command": c} for n, c in probes]}


def test_exec_child_holds_only_stdin_stdout_stderr():
    t = start_target()
    d = start_daemon(exec_config(("fds", ["/bin/ls", "-l", "/proc/self/fd"])),
                     args=["--tcp", "t=127.0.0.1:%d" % t.port])
    p = wait_probe(d, "fds", lambda p: p["last_outcome"] == "success" and p["output"], what="ls output")
    fds = {}
    for line in p["output"].splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            fds[int(left.split()[-1])] = target
    # ls's own directory descriptor is the one on /proc/<pid>/fd
    fds = {n: tg for n, tg in fds.items() if not (tg.startswith("/proc/") and tg.endswith("/fd"))}
    eq(sorted(fds), [0, 1, 2], "descriptors of the child (%r)" % fds)
    eq(fds[0], "/dev/null", "stdin")
    assert fds[1].startswith("pipe:") and fds[1] == fds[2], "stdout and stderr: %r" % fds


def test_exec_output_keeps_nul_bytes():
    script = "printf 'abc\\0def\\n\\351'; head -c 2000 /dev/zero"
    d = start_daemon(exec_config(("nul", ["/bin/sh", "-c", script]), ("short", ["/bin/sh", "-c", "printf 'abc\\0def\\n'"])))
    wait_probe(d, "nul", lambda p: p["last_outcome"] == "success", what="nul ran")
    wait_probe(d, "short", lambda p: p["last_outcome"] == "success", what="short ran")
    code, body, _ = harness.curl(d.url("/status"))
    eq(code, 200, "/status")
    assert '"abc\\u0000def\\n"' in body, "NUL not shown as \\u0000: %r" % body[:2000]
    ps = probes_by_name(json.loads(body))
    eq(ps["short"]["output"], "abc\x00def\n", "output of printf 'abc\\0def\\n'")
    want = "abc\x00def\n\ufffd" + "\x00" * (1024 - 9)
    eq(ps["nul"]["output"], want, "the first 1024 bytes, whatever they hold")


# ------------------------------------------------------------ 4. bytes in logs

def test_every_stderr_line_is_utf8_json():
    """Latin-1 bytes (0xE9) in config values and in a command's output: at start, at
    debug level (every attempt logged), on SIGUSR1, and on a SIGHUP whose file is
    rejected (its reload_failed line quotes the byte)."""
    d0 = tmpdir()
    path = os.path.join(d0, "config.json")
    good = (b'{"defaults": {"period": "100ms", "startup_period": "50ms"}, "probes": ['
            b'{"name": "e", "type": "exec", "command": ["/bin/sh", "-c", "printf \'caf\\\\351\'; exit 3", "caf\xe9"]},'
            b'{"name": "h", "type": "http", "url": "http://127.0.0.1:1/caf\xe9", "headers": {"X-Test": "caf\xe9"}}]}')
    write_bytes(path, good)
    d = start_daemon(args=["-c", path, "--log-level", "debug"])
    wait_probe(d, "e", lambda p: p["attempts"] >= 2, what="e ran twice")
    wait_probe(d, "h", lambda p: p["attempts"] >= 2, what="h ran twice")
    eq(probe(d, "e")["output"], "caf\ufffd", "e's output in /status")
    d.signal(signal.SIGUSR1)
    wait_events(d, "status", 1)
    write_bytes(path, good.replace(b'"name": "e"', b'"name": "caf\xe9"'))
    d.signal(signal.SIGHUP)
    failed = wait_events(d, "reload_failed", 1)[0]
    assert "caf\ufffd" in failed.get("error", ""), "reload_failed error: %r" % failed
    lines = strict_json_lines(stderr_bytes(d), "daemon stderr")
    assert any(l.get("event") == "attempt" for l in lines), "no debug attempt lines"
    # at start, the same file is a config error: one plain-text line, valid UTF-8
    rc, err = run_probed_bytes(["-l", "127.0.0.1:0", "-c", path])
    eq(rc, 2, "exit status of a start with the bad file (stderr %r)" % err)
    text = err.decode("utf-8", "strict")
    eq(len(text.splitlines()), 1, "stderr lines (%r)" % text)
    assert "probes[0].name" in text and "caf\ufffd" in text, "config error: %r" % text


# ------------------------------------------------------------ 6. error texts, probed check

def test_check_bad_urls_are_usage_errors():
    for url in ("http://", "http://127.0.0.1:99999/", "ftp://127.0.0.1/", "http://caf\udce9/"):
        arg = os.fsencode(url)
        rc, err = run_probed_bytes([b"check", arg])
        eq(rc, 2, "probed check %r: exit status (stderr %r)" % (url, err))
        text = err.decode("utf-8", "strict")
        eq(len(text.splitlines()), 1, "probed check %r: one stderr line (%r)" % (url, text))
        assert text.startswith("probed: check"), "probed check %r: %r" % (url, text)


def test_check_oversized_header_says_so():
    big = RawServer(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200000 + b"\r\nContent-Length: 0\r\n\r\n")
    fine = RawServer(b"HTTP/1.1 200 OK\r\nX-Small: a\r\nContent-Length: 0\r\n\r\n")
    try:
        r = run_probed(["check", "http://127.0.0.1:%d/" % big.port])
        eq(r.rc, 1, "exit status (%r)" % r)
        assert r.stderr.strip().endswith(": response headers too large"), "stderr: %r" % r.stderr
        eq(len(r.stderr.splitlines()), 1, "stderr lines")
        r = run_probed(["check", "http://127.0.0.1:%d/" % fine.port])
        eq(r.rc, 0, "a small header (%r)" % r)
    finally:
        big.close()
        fine.close()


def test_https_probe_oversized_header_says_so():
    """The same 200 KB header line over https (libcurl's path), in the probe's last_error."""
    import ssl
    d0 = tmpdir()
    cert, key = os.path.join(d0, "cert.pem"), os.path.join(d0, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    big = RawServer(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200000 + b"\r\nContent-Length: 0\r\n\r\n", tls=ctx)
    try:
        d = start_daemon({"defaults": {"period": "100ms", "startup_period": "50ms"},
                          "probes": [{"name": "big", "type": "http", "url": "https://127.0.0.1:%d/" % big.port}]})
        p = wait_probe(d, "big", lambda p: p["last_outcome"] == "failure", what="big failed")
        eq(p["last_error"], "response headers too large", "last_error")
    finally:
        big.close()


def test_libcurl_error_texts_keep_their_case():
    """TLS to a server answering plain HTTP: libcurl's text starts with "SSL", in a
    probe's last_error and in probed check."""
    plain = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    try:
        url = "https://127.0.0.1:%d/" % plain.port
        r = run_probed(["check", url])
        eq(r.rc, 1, "probed check exit status (%r)" % r)
        assert ": SSL " in r.stderr, "probed check stderr: %r" % r.stderr
        d = start_daemon({"defaults": {"period": "100ms", "startup_period": "50ms"},
                          "probes": [{"name": "s", "type": "http", "url": url}]})
        p = wait_probe(d, "s", lambda p: p["last_outcome"] == "failure", what="s failed")
        assert p["last_error"].startswith("SSL "), "last_error: %r" % p["last_error"]
    finally:
        plain.close()


if __name__ == "__main__":
    harness.main()
