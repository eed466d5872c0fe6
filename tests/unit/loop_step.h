/* Unit tests that run the real loop: step it until a condition holds. */
#pragma once
#include <check.h>
#include <stdbool.h>

#include "loop.h"
#include "util.h"

struct loop_stepper {
        struct timer t;
        bool (*pred)(void);
        void (*each_tick)(void); /* or NULL: runs on the loop before each look at pred */
        uint64_t deadline;
        bool timed_out;
};

static inline void loop_stepper_tick(struct loop *l, void *data)
{
        struct loop_stepper *s = data;

        if (s->each_tick)
                s->each_tick();
        if (s->pred()) {
                loop_exit(l);
        } else if (now_ns() > s->deadline) {
                s->timed_out = true;
                loop_exit(l);
        } else {
                loop_timer_arm(l, &s->t, now_ns() + NSEC_PER_MSEC);
        }
}

/* Runs l until pred() holds, looking every millisecond; fails the test after 5 s. */
static inline void loop_run_until(struct loop *l, bool (*pred)(void), void (*each_tick)(void))
{
        struct loop_stepper s = { .pred = pred, .each_tick = each_tick, .deadline = now_ns() + 5 * NSEC_PER_SEC };

        timer_init(&s.t, loop_stepper_tick, &s);
        loop_timer_arm(l, &s.t, now_ns());
        ck_assert_int_eq(loop_run(l), 0);
        loop_timer_disarm(l, &s.t);
        ck_assert_msg(!s.timed_out, "condition not reached within 5 s");
}
