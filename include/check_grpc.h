/* `probed check grpc://HOST:PORT[/SERVICE]` (README "Command line"): one
 * grpc.health.v1.Health/Check for images without a gRPC client. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* url begins with grpc:// (in any case: the caller dispatched on it). The exit status: 0 on SERVING, 1 otherwise, 2 when url is not
 * grpc://HOST:PORT[/SERVICE]; why (n bytes) says what came or what is wrong, for the
 * caller to print. timeout_ms covers connect and call. Initializes and cleans up libcurl
 * itself. */
int check_grpc(const char *url, uint64_t timeout_ms, char *why, size_t n);
