#!/bin/sh
# The "shell loop of curl" peer of the fleet benchmark: what a user writes without a
# prober. PARALLEL loops (default 2) share the N targets; each loop runs, forever,
# `curl` once per target of its share, one after the other, then `sleep 1`. One curl
# process per probe, so with many targets a round takes longer than the 1 s period;
# the harness measures the rate it actually achieves. The harness counts the CPU of
# this whole process tree (shells, curl, sleep) and stops it by killing its process
# group.
# usage: curl_loop.sh BASE_PORT N PATH [PARALLEL]
base=$1
n=$2
path=$3
par=${4:-2}
[ "$par" -gt "$n" ] && par=$n
j=0
while [ "$j" -lt "$par" ]; do
	(while :; do
		i=$j
		while [ "$i" -lt "$n" ]; do
			curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$((base + i))$path" 2>/dev/null
			i=$((i + par))
		done
		sleep 1
	done) &
	j=$((j + 1))
done
wait
