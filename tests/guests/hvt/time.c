/*
 * hvt time: walltime around a poll with a timeout (no network devices, so
 * the poll only waits). Prints the wall clock and how long the poll took.
 * Command line: ms=N (poll timeout, default 1000).
 */
#include "hvt.h"

HVT_ABI_NOTE(1);
HVT_MANIFEST(1);

void hvt_main(void)
{
    u64 ms = cmdline_num("ms=", 1000);
    u64 t0 = walltime();
    int ret = -1;
    u64 ready = poll(ms * 1000000, &ret);
    u64 t1 = walltime();
    printf("walltime_s=%lu\n", t0 / 1000000000);
    printf("poll ret=%d ready=%lx\n", ret, ready);
    printf("poll_elapsed_ms=%lu\n", (t1 - t0) / 1000000);
    halt(0);
}
