/* The names of include/probe.h's enums, as /status, /metrics and the logs show them. */
#include "probe.h"

const char *outcome_to_string(enum outcome o)
{
        static const char *const table[_OUTCOME_MAX] = {
                [OUTCOME_SUCCESS] = "success",     [OUTCOME_FAILURE] = "failure", [OUTCOME_TIMEOUT] = "timeout",
                [OUTCOME_CANCELLED] = "cancelled", [OUTCOME_ERROR] = "error",
        };

        if ((int) o < 0 || o >= _OUTCOME_MAX)
                return NULL;
        return table[o];
}

const char *probe_state_to_string(enum probe_state s)
{
        static const char *const table[_PROBE_STATE_MAX] = {
                [PROBE_WAITING] = "waiting",
                [PROBE_RUNNING] = "running",
                [PROBE_BACKOFF] = "backoff",
                [PROBE_STOPPED] = "stopped",
        };

        if ((int) s < 0 || s >= _PROBE_STATE_MAX)
                return NULL;
        return table[s];
}
