/*
 * hvt exit: the smallest useful hvt guest, for the boot benchmark's
 * monitor-side comparison (`hvt-exit`): one line through the puts
 * hypercall (the benchmark's ready mark), then halt with status 0. It
 * carries ABI version 2, so Solo5 0.12's solo5-hvt runs it too. On the
 * development machines ring-0 guest code is emulated (~1 us an
 * instruction): the fewer the guest runs, the more of a boot's time is
 * the monitor's own.
 */
#include "hvt.h"

HVT_ABI_NOTE(2);
HVT_MANIFEST(1);

void hvt_main(void)
{
    puts("hvt exit\n");
}
