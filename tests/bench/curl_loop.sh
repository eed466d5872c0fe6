#!/bin/sh
# The "shell loop of curl" peer of the fleet benchmark: what a user writes without a
# prober, one loop per target, each running `curl` then `sleep 1` (so the period is
# 1 s plus the probe's duration and two process start-ups; the harness measures what
# rate that actually achieves). The harness counts the CPU of this whole process tree
# (shells, curl, sleep) and stops it by killing its process group.
# usage: curl_loop.sh BASE_PORT N PATH
base=$1
n=$2
path=$3
i=0
while [ "$i" -lt "$n" ]; do
	port=$((base + i))
	(while :; do
		curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port$path" 2>/dev/null
		sleep 1
	done) &
	i=$((i + 1))
done
wait
