/* fpbench's rounds without Linux: bm_main runs WORK rounds, checks the checksum
 * against the table of guest/fpbench.expected and powers off with status 0, or 1
 * on a wrong checksum (WORK must be one of the table's values). */
#include "support.h"
#include "../guest/fpbench.c"

double sqrt(double x) { return __builtin_sqrt(x); }
double fma(double a, double b, double c) { return __builtin_fma(a, b, c); }
double fabs(double x) { return __builtin_fabs(x); }

void bm_main(void)
{
    bodies_init();
    matrices_init();
    horner_init();
    double drift;
    uint64_t h = run(WORK, &drift);
    for (size_t i = 0; expected_table[i].work != ~0ul; i++)
        if (expected_table[i].work == WORK)
            power_off(expected_table[i].checksum == h ? 0 : 1);
    power_off(2);
}
