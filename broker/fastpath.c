/* The broker's hot path in C: forward what a sender may plainly publish, hand the rest to Python.
 *
 * Built by `make install` into broker/_fastpath.so and loaded with ctypes (broker/fastpath.py), so it
 * needs a C compiler and libc's headers, not Python's. libzmq's functions come as pointers from
 * the very library pyzmq loaded: one libzmq in the process, whatever its file is called.
 *
 * The broker's Python code decides; this only remembers its decisions. A (sender, topic) pair
 * the gate allowed, whose topic is neither latched nor personal, is put in the table with the
 * topic's size limit; such a message goes from XSUB to XPUB here with the sender stamped on its
 * topic frame (bus/envelope.py: topic, NUL, identity), exactly as the Python loop would send it. Anything else (a pair not in the table,
 * an oversized body, a frame count other than two, no verified sender) is handed back to Python,
 * whose judgement it then gets.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* zmq.h's zmq_msg_t: 64 opaque bytes, pointer-aligned. */
typedef struct { unsigned char _[64]; } __attribute__((aligned(sizeof(void *)))) zmq_msg_t;

#define ZMQ_DONTWAIT 1
#define ZMQ_SNDMORE 2
#define ZMQ_POLLIN 1
#define ZMQ_FD 14
#define ZMQ_EVENTS 15

/* zmq.h's zmq_pollitem_t on Linux: a socket, or (socket NULL) a plain file descriptor. */
typedef struct {
    void *socket;
    int fd;
    short events;
    short revents;
} zmq_pollitem_t;

typedef struct {
    int (*msg_init)(zmq_msg_t *);
    int (*msg_recv)(zmq_msg_t *, void *, int);
    int (*msg_send)(zmq_msg_t *, void *, int);
    int (*msg_close)(zmq_msg_t *);
    void *(*msg_data)(zmq_msg_t *);
    size_t (*msg_size)(const zmq_msg_t *);
    int (*msg_more)(const zmq_msg_t *);
    const char *(*msg_gets)(const zmq_msg_t *, const char *);
    int (*msg_init_size)(zmq_msg_t *, size_t);
    int (*errno_)(void);
    int (*getsockopt)(void *, int, void *, size_t *);
} zmq_api;

/* A message left for the Python side's judgement: its frames so far (the head cut to its buffer,
 * the body whole: the socket's size limit is the buffer's), whether more follow unread (1: Python
 * reads them off the socket itself; -1: a lone frame, no body), and the sender ("" if unverified). */
typedef struct {
    char *head;
    size_t head_cap, head_len;
    char *body;
    size_t body_cap, body_len;
    int more;
    size_t user_len;
    char user[64];
    char peer[64]; /* the sender's "Peer-Address" (localhost:uid:gid:pid on ipc), NUL-terminated: who refusals name */
} held;

typedef struct {
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
} counters;

#define MAX_USER ((int)sizeof(((held *)0)->user))
#define MAX_TOPIC 128
#define SLOTS 1024 /* a power of two; at most half are ever used */

typedef struct {
    uint32_t max_size;
    uint8_t used, user_len, topic_len;
    char user[MAX_USER];
    char topic[MAX_TOPIC];
} entry;

typedef struct {
    entry slots[SLOTS];
    int count;
    char *tap; /* the tap's ring while a tool watches (bus/tap.py), else NULL */
} table;

/* bus/tap.py's header and record: the same layout, written the same way. */
typedef struct {
    char magic[8];
    uint64_t capacity, incarnation, head, reserved;
} tap_header;

typedef struct {
    uint64_t start;
    uint32_t head_len, body_len;
} tap_record;

#define TAP_DATA 64
#define TAP_WRAP 0xFFFFFFFFu

/* Append one message to the tap. `reserved` is published before the bytes it covers, `head` after
 * them: a reader that copied a record then sees `reserved` and knows whether it may have been torn. */
void lens_tap_write(char *tap, const char *a, size_t a_len, const char *b, size_t b_len) {
    tap_header *h = (tap_header *)tap;
    uint64_t cap = h->capacity, pos = h->head;
    uint64_t total = (sizeof(tap_record) + a_len + b_len + 7) & ~(uint64_t)7;
    if (total > cap / 2) return; /* as bus/tap.py: the tool sees its sequence gap */
    uint64_t off = pos % cap;
    char *data = tap + TAP_DATA;
    if (cap - off < total) {
        __atomic_store_n(&h->reserved, pos + (cap - off) + total, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        if (cap - off >= sizeof(tap_record)) {
            tap_record wrap = {pos, TAP_WRAP, 0};
            memcpy(data + off, &wrap, sizeof wrap);
        }
        pos += cap - off;
        off = 0;
    } else {
        __atomic_store_n(&h->reserved, pos + total, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    tap_record r = {pos, (uint32_t)a_len, (uint32_t)b_len};
    memcpy(data + off, &r, sizeof r);
    memcpy(data + off + sizeof r, a, a_len);
    memcpy(data + off + sizeof r + a_len, b, b_len);
    __atomic_store_n(&h->head, pos + total, __ATOMIC_RELEASE);
}

/* Start (ring: bus/tap.py's mapping) or stop (NULL) copying what is forwarded into the tap. */
void lens_table_tap(table *t, char *ring) { t->tap = ring; }

static uint64_t hash(const char *user, size_t user_len, const char *topic, size_t topic_len) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < user_len; i++) h = (h ^ (uint8_t)user[i]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL; /* no user/topic split makes two pairs one */
    for (size_t i = 0; i < topic_len; i++) h = (h ^ (uint8_t)topic[i]) * 1099511628211ULL;
    return h;
}

static entry *find(table *t, const char *user, size_t user_len, const char *topic, size_t topic_len) {
    if (user_len >= MAX_USER || topic_len > MAX_TOPIC) return NULL;
    for (uint64_t i = hash(user, user_len, topic, topic_len);; i++) {
        entry *e = &t->slots[i & (SLOTS - 1)];
        if (!e->used) return e;
        if (e->user_len == user_len && e->topic_len == topic_len && !memcmp(e->user, user, user_len) &&
            !memcmp(e->topic, topic, topic_len))
            return e;
    }
}

/* The body's room is as large as the socket allows, mapped, not zeroed: pages never written cost no
 * memory, and those a big message wrote are given back (lens_held_trim). */
held *lens_held_new(size_t head_cap, size_t body_cap) {
    held *h = calloc(1, sizeof(held));
    if (h == NULL) return NULL;
    h->head = malloc(head_cap);
    h->body = mmap(NULL, body_cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h->body == MAP_FAILED) h->body = NULL;
    if (h->head == NULL || h->body == NULL) {
        free(h->head);
        if (h->body != NULL) munmap(h->body, body_cap);
        free(h);
        return NULL;
    }
    h->head_cap = head_cap;
    h->body_cap = body_cap;
    return h;
}

void lens_held_free(held *h) {
    if (h == NULL) return;
    free(h->head);
    munmap(h->body, h->body_cap);
    free(h);
}

/* After Python judged a held message: a big body's pages go back to the kernel (a refused 3 MB message
 * left them resident for good). */
void lens_held_trim(held *h) {
    if (h->body_len > 65536) madvise(h->body, h->body_cap, MADV_DONTNEED);
    h->body_len = 0;
}

table *lens_table_new(void) { return calloc(1, sizeof(table)); }

void lens_table_free(table *t) { free(t); }

/* Remember that `user` may plainly publish `topic` up to `max_size` bytes; 0 when the table is
 * full or the names too long (the Python path then keeps judging that pair: slower, as right). */
int lens_table_allow(table *t, const char *user, size_t user_len, const char *topic, size_t topic_len,
                     uint32_t max_size) {
    if (t->count >= SLOTS / 2) return 0;
    entry *e = find(t, user, user_len, topic, topic_len);
    if (e == NULL) return 0;
    if (!e->used) {
        e->used = 1;
        e->user_len = (uint8_t)user_len;
        e->topic_len = (uint8_t)topic_len;
        memcpy(e->user, user, user_len);
        memcpy(e->topic, topic, topic_len);
        t->count++;
    }
    e->max_size = max_size;
    return 1;
}

static void hold(const zmq_api *z, held *h, zmq_msg_t *head, zmq_msg_t *body, int more, const char *user,
                 size_t user_len) {
    size_t len = z->msg_size(head);
    h->head_len = len < h->head_cap ? len : h->head_cap;
    memcpy(h->head, z->msg_data(head), h->head_len);
    h->body_len = 0;
    if (body != NULL) {
        len = z->msg_size(body);
        h->body_len = len < h->body_cap ? len : h->body_cap;
        memcpy(h->body, z->msg_data(body), h->body_len);
    }
    h->more = more;
    h->user_len = user_len;
    memcpy(h->user, user, user_len);
    const char *peer = z->msg_gets(head, "Peer-Address");
    snprintf(h->peer, sizeof h->peer, "%s", peer ? peer : "");
}

/* Up to `batch` messages from xsub: 0 when xsub is empty, 1 when the batch ran out first (more may
 * wait: the caller polls its other sockets, then comes back), 2 when a message waits in `h` for
 * Python (then call again), -1 on an error of libzmq's. Python is returned to rather than called
 * back: a callback would need libffi's trampolines, which MemoryDenyWriteExecute may forbid. */
int lens_forward(const zmq_api *z, void *xsub, void *xpub, const table *t, int batch, held *h, counters *c) {
    zmq_msg_t head, body;
    for (int n = 0; n < batch; n++) {
        z->msg_init(&head);
        if (z->msg_recv(&head, xsub, ZMQ_DONTWAIT) < 0) {
            int err = z->errno_();
            z->msg_close(&head);
            return err == EAGAIN ? 0 : -1;
        }
        c->msgs_in++;
        /* Copied: the string lives in the message's metadata, which goes with the message when sent. */
        char user[MAX_USER];
        const char *verified = z->msg_gets(&head, "User-Id");
        size_t user_len = verified ? strlen(verified) : 0;
        if (user_len >= MAX_USER) user_len = 0; /* not an identity this table holds: Python judges it */
        memcpy(user, verified ? verified : "", user_len);
        user[user_len] = 0;
        if (!z->msg_more(&head)) {
            hold(z, h, &head, NULL, -1, user, user_len);
            z->msg_close(&head);
            return 2;
        }
        z->msg_init(&body);
        if (z->msg_recv(&body, xsub, 0) < 0) { /* cannot happen mid-message; libzmq's error stands */
            z->msg_close(&head);
            z->msg_close(&body);
            return -1;
        }
        size_t size = z->msg_size(&body);
        c->bytes_in += size;
        int more = z->msg_more(&body);
        const entry *e = NULL;
        if (!more && user_len)
            e = find((table *)t, user, user_len, z->msg_data(&head), z->msg_size(&head));
        if (e == NULL || !e->used || size > e->max_size) {
            hold(z, h, &head, &body, more, user, user_len);
            z->msg_close(&head);
            z->msg_close(&body);
            return 2;
        }
        /* The stamped topic frame: short enough that libzmq keeps it inside the message, no malloc. */
        size_t topic_len = z->msg_size(&head);
        zmq_msg_t stamped;
        if (z->msg_init_size(&stamped, topic_len + 1 + user_len) < 0) {
            z->msg_close(&head);
            z->msg_close(&body);
            return -1;
        }
        char *out = z->msg_data(&stamped);
        memcpy(out, z->msg_data(&head), topic_len);
        out[topic_len] = 0;
        memcpy(out + topic_len + 1, user, user_len);
        z->msg_close(&head);
        if (t->tap != NULL) lens_tap_write(t->tap, out, topic_len + 1 + user_len, z->msg_data(&body), size);
        /* XPUB never blocks (past its high-water mark it drops for that subscriber, as in Python). */
        if (z->msg_send(&stamped, xpub, ZMQ_SNDMORE) < 0 || z->msg_send(&body, xpub, 0) < 0) {
            z->msg_close(&stamped);
            z->msg_close(&body);
            return -1;
        }
        z->msg_close(&stamped); /* empty after a send: closing is harmless and keeps every path alike */
        z->msg_close(&body);
        c->msgs_out++;
        c->bytes_out += size;
    }
    return 1;
}

/* One lane as lens_serve sees it: what lens_forward takes besides the table. */
typedef struct {
    void *xsub, *xpub;
    held *h;
    counters *c;
} lane;

static long ms_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Whether a ZeroMQ socket has a message to read. Asking makes it process its pending commands,
 * which is also what lets its descriptor signal again (below). */
static int readable(const zmq_api *z, void *socket) {
    uint32_t events = 0;
    size_t size = sizeof events;
    if (z->getsockopt(socket, ZMQ_EVENTS, &events, &size) < 0) return -1;
    return (events & ZMQ_POLLIN) != 0;
}

/* The broker's wait and its plain forwarding in one, so that a message whose verdict is known
 * costs no return to Python at all. Waits on `items` (each lane's XSUB first, in lane order, then
 * the broker's other sockets and descriptors) for up to timeout_ms (-1: no limit), forwards what the
 * XSUBs bring through lens_forward, and returns when Python is needed: 1 when another item is ready
 * (its revents say which), 2 + i when lane i holds a message for Python's judgement, 0 when the time
 * is up or a signal came (Python's handlers then run), -1 on an error of libzmq's.
 *
 * It blocks in poll(2) on the sockets' own descriptors (ZMQ_FD), not in zmq_poll: zmq_poll asks
 * every socket for its events before and after it waits, two system calls each (a getpid and a
 * poll of the socket's mailbox), some fourteen for the broker's seven items on every wake-up, on
 * the path of every message. A socket's descriptor signals only when something new happened to
 * it (edge-triggered), so a socket is asked for its events once on entry (Python may have left a
 * message unread), after its descriptor signals, and an XPUB after it was forwarded to (sending
 * may have taken in the command that would have signalled a subscription). An XSUB is read until
 * it is empty, which re-arms its descriptor. */
#define MAX_ITEMS 32
int lens_serve(const zmq_api *z, zmq_pollitem_t *items, int n_items, const lane *lanes, int n_lanes,
               const table *t, int batch, long timeout_ms) {
    if (n_items > MAX_ITEMS) return -1;
    struct pollfd fds[MAX_ITEMS];
    int ready[MAX_ITEMS];
    for (int i = 0; i < n_items; i++) {
        ready[i] = 0; /* a plain descriptor is left to poll(2); a socket is asked now */
        fds[i].fd = items[i].fd;
        fds[i].events = POLLIN;
        items[i].revents = 0;
        if (items[i].socket != NULL) {
            size_t size = sizeof fds[i].fd;
            if (z->getsockopt(items[i].socket, ZMQ_FD, &fds[i].fd, &size) < 0) return -1;
            if ((ready[i] = readable(z, items[i].socket)) < 0) return -1;
        }
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int busy = 0; /* a lane whose batch ran out: come back to it before waiting */
        for (int i = 0; i < n_lanes; i++) {
            if (!ready[i]) continue;
            int result = lens_forward(z, lanes[i].xsub, lanes[i].xpub, t, batch, lanes[i].h, lanes[i].c);
            if (result < 0) return -1;
            if (result == 2) return 2 + i; /* xsub may hold more: asked again on the next entry */
            ready[i] = result == 1;
            busy |= ready[i];
            for (int j = n_lanes; j < n_items; j++) /* this lane's XPUB, if it is one of the others */
                if (items[j].socket == lanes[i].xpub && !ready[j] && (ready[j] = readable(z, items[j].socket)) < 0)
                    return -1;
        }
        int others = 0;
        for (int i = n_lanes; i < n_items; i++)
            if (ready[i]) {
                items[i].revents = ZMQ_POLLIN;
                others = 1;
            }
        if (others) return 1;
        long wait = timeout_ms;
        if (timeout_ms >= 0) {
            wait = timeout_ms - ms_since(&start);
            if (wait < 0) wait = 0;
        }
        if (busy) {
            if (timeout_ms >= 0 && wait == 0) return 0; /* busy lanes never keep Python's timers waiting */
            wait = 0;                                 /* a look at the others, then back to the lanes */
        }
        int n = poll(fds, n_items, wait > INT_MAX ? INT_MAX : (int)wait);
        if (n < 0) return errno == EINTR ? 0 : -1;
        if (n == 0 && !busy) return 0;
        for (int i = 0; i < n_items; i++) {
            if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
            if (items[i].socket == NULL) ready[i] = 1;
            else if (!ready[i] && (ready[i] = readable(z, items[i].socket)) < 0) return -1;
        }
    }
}
