#!/usr/bin/python3
"""Scraper that drives prometheus-blackbox-exporter for the fleet benchmark.

It plays Prometheus's part: every target is scraped once per second through the
exporter's /probe?target=URL&module=http_2xx, the targets spread evenly over the
second as Prometheus spreads scrape offsets. A pool of worker threads each owns one
keep-alive connection to the exporter and a share of the targets; a worker that falls
behind scrapes at once (never skips), so the achieved rate shows in the target's
access log. The harness measures this process's CPU separately and excludes it from
the exporter's cost.

usage: scraper.py EXPORTER_PORT TARGET_BASE_PORT N PATH SECONDS [CONNECTIONS]
Prints one JSON line with counts when it ends (after SECONDS or on SIGTERM).
"""
import http.client
import json
import signal
import sys
import threading
import time
import urllib.parse


def worker(w, conns, n, exporter_port, base, path, start, stop_at, stats, lock, stop):
    targets = list(range(w, n, conns))
    conn = None
    ok = fail = 0
    k = 0
    while not stop.is_set():
        i = targets[k % len(targets)]
        rnd = k // len(targets)
        due = start + rnd + i / n
        k += 1
        if due >= stop_at:
            break
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        url = "http://127.0.0.1:%d%s" % (base + i, path)
        q = "/probe?" + urllib.parse.urlencode({"target": url, "module": "http_2xx"})
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", exporter_port, timeout=5)
            conn.request("GET", q)
            r = conn.getresponse()
            body = r.read()
            if r.status == 200 and b"probe_success 1" in body:
                ok += 1
            else:
                fail += 1
        except (OSError, http.client.HTTPException):
            fail += 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        stats["ok"] += ok
        stats["fail"] += fail


def main():
    exporter_port, base, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    path, seconds = sys.argv[4], float(sys.argv[5])
    conns = int(sys.argv[6]) if len(sys.argv) > 6 else min(n, 128)
    conns = max(1, min(conns, n))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    start = time.monotonic()
    stats = {"ok": 0, "fail": 0}
    lock = threading.Lock()
    threads = [threading.Thread(target=worker, daemon=True,
                                args=(w, conns, n, exporter_port, base, path, start,
                                      start + seconds, stats, lock, stop))
               for w in range(conns)]
    for t in threads:
        t.start()
    deadline = start + seconds + 10
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        stop.wait(0.2)
    stop.set()
    for t in threads:
        t.join(2)
    stats["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
