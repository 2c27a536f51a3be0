/* The frame ring's seqlock, its four ordering points, for a CPU that reorders memory (frames/ring.py).
 *
 * Built by `make install` into bus/_seqlock.so (and into the wheel by setup.py) and loaded with ctypes
 * by bus/seqlock.py; libc's headers only. Each function takes the address of a slot's generation, a
 * 64-bit word in the shared mapping, aligned to 64 bytes (so its loads and stores are single-copy atomic
 * on every 64-bit CPU we run on).
 *
 * Why in C: the pixels are copied by numpy, whose memcpy is plain loads and stores. On x86 (TSO) stores
 * leave the core in program order and loads are not reordered with loads, so the generation's odd/even
 * stores bracket the pixels by luck of the architecture. On arm64 neither holds: without barriers a
 * reader can see the even generation before the pixels it guards, or read pixels from before its first
 * look at the generation, and accept a torn frame. Python has no fences; these calls are them. Being
 * calls into a separate library, they are also compiler barriers for whatever numpy does between them.
 *
 * The pairing (Linux's write_seqcount_begin/end and read_seqcount_begin/retry, in C11 terms):
 *   writer: odd -> release fence -> pixels -> release store of even
 *   reader: acquire load -> pixels -> acquire fence -> load again
 */
#include <stdint.h>

/* The writer (only one per ring) makes the generation odd before it touches the pixels. The release
 * fence after the odd store keeps every later store (the pixels) from becoming visible before it: a
 * reader that sees any new pixel and then fences (lens_seq_read_end) sees the odd generation or later. */
uint64_t lens_seq_write_begin(uint64_t *generation)
{
    uint64_t odd = __atomic_load_n(generation, __ATOMIC_RELAXED) + 1; /* only the writer stores it */
    __atomic_store_n(generation, odd, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return odd;
}

/* Even again, with release: every pixel (and the slot's frame id and time) is visible before the even
 * generation is, so a reader whose acquire load sees it sees the whole frame. */
uint64_t lens_seq_write_end(uint64_t *generation)
{
    uint64_t even = __atomic_load_n(generation, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(generation, even, __ATOMIC_RELEASE);
    return even;
}

/* The reader's first look, with acquire: no pixel load after it may be answered from before it, so the
 * pixels read are at least as new as the generation seen. */
uint64_t lens_seq_read_begin(const uint64_t *generation)
{
    return __atomic_load_n(generation, __ATOMIC_ACQUIRE);
}

/* The reader's second look. The acquire fence keeps the pixel loads before it from being answered after
 * the load below: if any pixel came from a write that started after the first look, the writer's
 * odd store (ordered before its pixels by its release fence) is visible here, and the generation moved. */
uint64_t lens_seq_read_end(const uint64_t *generation)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(generation, __ATOMIC_RELAXED);
}

/* The same order for the bus's tap (bus/tap.py), whose writer publishes a value rather than counting:
 * `reserved` is stored, then fenced, before the bytes it covers are written (as write_begin's odd store),
 * and `head` is stored with release after them (as write_end's even one). Its reader uses read_begin for
 * `head` and read_end for `reserved`. Each returns the value stored. */
uint64_t lens_seq_store_then_fence(uint64_t *word, uint64_t value)
{
    __atomic_store_n(word, value, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return value;
}

uint64_t lens_seq_store_release(uint64_t *word, uint64_t value)
{
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
    return value;
}
