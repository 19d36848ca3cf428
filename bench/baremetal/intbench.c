/* intbench's rounds without Linux: bm_main runs WORK rounds, checks the checksum
 * against the table of guest/intbench.expected and powers off with status 0, or 1
 * on a wrong checksum (WORK must be one of the table's values). */
#include "support.h"
#include "../guest/intbench.c"

void bm_main(void)
{
    crc32_init();
    small_primes_init();
    uint64_t h = run(WORK);
    for (size_t i = 0; expected_table[i].work != ~0ul; i++)
        if (expected_table[i].work == WORK)
            power_off(expected_table[i].checksum == h && !invariant_failed ? 0 : 1);
    power_off(2);
}
