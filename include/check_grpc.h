/* `probed check grpc://HOST:PORT[/SERVICE]` (README "Command line"): one
 * grpc.health.v1.Health/Check for images without a gRPC client. */
#pragma once
#include <stdint.h>

/* The exit status: 0 on SERVING, 1 otherwise (why on stderr), 2 when url is not
 * grpc://HOST:PORT[/SERVICE]. timeout_ms covers connect and call. Initializes and
 * cleans up libcurl itself. */
int check_grpc(const char *url, uint64_t timeout_ms);
