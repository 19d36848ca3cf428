/*
 * intbench: a CPU-bound integer workload for measuring an emulator's MIPS.
 *
 * Usage: intbench WORK [EXPECTED_HEX]
 *
 * WORK rounds are run; each round fills a buffer with xorshift64 output, takes
 * its CRC32, heap-sorts part of it, sieves a segment of primes and runs a few
 * Euclid GCDs (integer division). Everything folds into one 64-bit checksum.
 * The result is deterministic and independent of the host: it is checked
 * against EXPECTED_HEX if given, else against the built-in table for the
 * usual WORK values. Prints
 *
 *   intbench work=W checksum=HEX status=ok|unchecked|MISMATCH
 *   elapsed_ns=N
 *
 * where N covers only the rounds (measured with CLOCK_MONOTONIC), so the
 * instructions that depend on WORK all fall inside the timed region.
 * Exit status: 0 ok or unchecked, 1 mismatch or failed invariant, 2 usage.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUF_WORDS 1024
#define SORT_WORDS 512
#define SEG_SIZE 8192
#define SEG_COUNT 64
#define SMALL_PRIME_LIMIT 725 /* > sqrt(SEG_SIZE * SEG_COUNT) */

static uint32_t crc_table[256];
static uint32_t buf[BUF_WORDS];
static uint32_t sortbuf[SORT_WORDS];
static uint8_t segment[SEG_SIZE];
static uint32_t small_primes[SMALL_PRIME_LIMIT];
static unsigned small_prime_count;
static int invariant_failed;

/* Checksums of a full run for the WORK values the scripts use. */
static const struct {
    unsigned long work;
    uint64_t checksum;
} expected_table[] = {
#ifndef EXPECTED_EMPTY
#include "intbench.expected"
#endif
    {~0ul, 0}, /* sentinel: no run has this WORK */
};

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void sift_down(uint32_t *a, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && a[child + 1] > a[child])
            child++;
        if (a[root] >= a[child])
            return;
        uint32_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

static void heap_sort(uint32_t *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

static void small_primes_init(void)
{
    static uint8_t composite[SMALL_PRIME_LIMIT];
    for (unsigned i = 2; i < SMALL_PRIME_LIMIT; i++) {
        if (composite[i])
            continue;
        small_primes[small_prime_count++] = i;
        for (unsigned j = i * i; j < SMALL_PRIME_LIMIT; j += i)
            composite[j] = 1;
    }
}

/* Counts the primes in [base, base + SEG_SIZE) and sums them. */
static uint64_t sieve_segment(uint32_t base, uint32_t *count)
{
    memset(segment, 1, sizeof segment);
    if (base == 0) {
        segment[0] = 0;
        segment[1] = 0;
    }
    for (unsigned k = 0; k < small_prime_count; k++) {
        uint32_t p = small_primes[k];
        uint32_t start = p * p;
        if (start >= base + SEG_SIZE)
            break;
        if (start < base)
            start = (base + p - 1) / p * p;
        for (uint32_t m = start; m < base + SEG_SIZE; m += p)
            segment[m - base] = 0;
    }
    uint64_t sum = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < SEG_SIZE; i++) {
        if (segment[i]) {
            n++;
            sum += base + i;
        }
    }
    *count = n;
    return sum;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001b3ull;
    h ^= h >> 29;
    return h;
}

static uint64_t run(unsigned long work)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint32_t primes_in_pass = 0;

    for (unsigned long r = 0; r < work; r++) {
        for (int i = 0; i < BUF_WORDS; i++)
            buf[i] = (uint32_t)(xorshift64(&seed) >> 16);
        h = mix(h, crc32((const uint8_t *)buf, sizeof buf));

        memcpy(sortbuf, buf, sizeof sortbuf);
        heap_sort(sortbuf, SORT_WORDS);
        for (int i = 1; i < SORT_WORDS; i++)
            if (sortbuf[i - 1] > sortbuf[i])
                invariant_failed = 1;
        for (int i = 0; i < SORT_WORDS; i += 7)
            h = mix(h, (uint64_t)sortbuf[i] * (uint64_t)(i + 1));

        uint32_t seg = (uint32_t)(r % SEG_COUNT);
        uint32_t count;
        h = mix(h, sieve_segment(seg * SEG_SIZE, &count));
        h = mix(h, count);
        primes_in_pass += count;
        if (seg == SEG_COUNT - 1) {
            /* pi(524288) = 43390 */
            if (primes_in_pass != 43390)
                invariant_failed = 1;
            primes_in_pass = 0;
        }

        for (int i = 0; i < 32; i++) {
            uint64_t a = xorshift64(&seed) | 1;
            uint64_t b = (xorshift64(&seed) >> (i & 31)) | 1;
            h = mix(h, gcd(a, b));
        }
    }
    return h;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: intbench WORK [EXPECTED_HEX]\n");
        return 2;
    }
    char *end;
    unsigned long work = strtoul(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0') {
        fprintf(stderr, "intbench: bad WORK '%s'\n", argv[1]);
        return 2;
    }

    crc32_init();
    if (crc32((const uint8_t *)"123456789", 9) != 0xcbf43926u) {
        printf("intbench: CRC32 known-answer test failed\n");
        return 1;
    }
    small_primes_init();

    uint64_t t0 = now_ns();
    uint64_t h = run(work);
    uint64_t t1 = now_ns();

    int have_expected = 0;
    uint64_t expected = 0;
    if (argc == 3) {
        expected = strtoull(argv[2], NULL, 16);
        have_expected = 1;
    } else {
        for (size_t i = 0; i < sizeof expected_table / sizeof expected_table[0]; i++) {
            if (expected_table[i].work == work) {
                expected = expected_table[i].checksum;
                have_expected = 1;
            }
        }
    }

    const char *status = "unchecked";
    int rc = 0;
    if (invariant_failed) {
        status = "INVARIANT-FAILED";
        rc = 1;
    } else if (have_expected) {
        status = h == expected ? "ok" : "MISMATCH";
        rc = h == expected ? 0 : 1;
    }
    printf("intbench work=%lu checksum=%016" PRIx64 " status=%s", work, h, status);
    if (rc != 0 && have_expected)
        printf(" expected=%016" PRIx64, expected);
    printf("\nelapsed_ns=%" PRIu64 "\n", t1 - t0);
    return rc;
}
