/* The media benchmark's traffic generator (bench/media_bench.py builds and drives it).
 *
 * Same behaviour as media_bench.py's Python Generator, at a fraction of its CPU so that the server under
 * test gets the machine: S sockets per side on 127.0.0.1, 172-byte RTP packets every 20 ms for each call
 * in both directions, spread over 20 phases of 1 ms; every packet carries its call, direction, sequence
 * and send time (CLOCK_MONOTONIC ns); loss and one-way delay are measured on receipt.
 *
 * SDES-SRTP (RFC 3711 AES_CM_128_HMAC_SHA1_80 with OpenSSL's libcrypto, built with -DWITH_SRTP -lcrypto;
 * Debian 12's libsrtp2 uses NSS and costs about 6 us per packet, OpenSSL's AES-NI well under 1): every
 * call has four master keys+salts (30 bytes, hex): what side a sends with, what side a receives with,
 * the same for side b; packets are protected before sendto and authenticated and decrypted on receipt
 * (a failure counts as srtp_failures and the packet as lost; no replay check, the servers do theirs).
 * The direct calibration streams stay plain.
 *
 * argv:   [SOCKETS [spin]]: with "spin" the generator polls its sockets without sleeping (epoll_wait with
 *         timeout 0), so that a server's sendto on loopback never has to wake it, as it never wakes a
 *         remote phone; media_bench.py pins it to CPU 0 and the servers to the other CPUs.
 * stdin:  "run DURATION WARMUP ECHO DIRECT N [SRTP]" then N lines "PORT_A PORT_B [A_TX A_RX B_TX B_RX]",
 *         or "quit".
 * stdout: first "{"a": [...], "b": [...], "srtp": 0|1}" (the sockets' ports), then one JSON line per run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_SRTP
#define OPENSSL_API_COMPAT 0x10100000L
#include <openssl/evp.h>
#include <openssl/hmac.h>
#define HAVE_SRTP 1
#else
#define HAVE_SRTP 0
#endif

#define PACKET 172
#define SLOTS 20
#define PERIOD_NS 20000000LL
#define KEY_SALT 30
#define SRTP_TAG 10

typedef struct {
    int fd;
    struct sockaddr_in to;
    uint32_t call, ssrc;
    uint8_t dir;
    uint8_t buf[PACKET];
    void *tx;  /* srtp_ctx_t of the sending side, or NULL (plain) */
} stream_t;

/* One direction's SRTP crypto context (one SSRC per context in this generator). */
typedef struct {
#ifdef WITH_SRTP
    EVP_CIPHER_CTX *aes;
    HMAC_CTX *hmac;
#endif
    uint8_t salt[14];
    uint32_t roc;
    uint16_t s_l;
    int seen;
} srtp_ctx_t;

/* Per call with SRTP: contexts [a_tx, a_rx, b_tx, b_rx]. */
static srtp_ctx_t *sessions;
static int nsessions_calls;

#ifdef WITH_SRTP
/* RFC 3711 4.3: AES-CM PRF of the master key over (master salt XOR label << 48), index 0 (kdr 0). */
static void derive(const uint8_t *master, uint8_t label, uint8_t *out, int len) {
    uint8_t iv[16] = {0}, zeros[32] = {0};
    memcpy(iv, master + 16, 14);
    iv[7] ^= label;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n;
    EVP_EncryptInit_ex(c, EVP_aes_128_ctr(), NULL, master, iv);
    EVP_EncryptUpdate(c, out, &n, zeros, len);
    EVP_CIPHER_CTX_free(c);
}

static void new_session(srtp_ctx_t *ctx, const uint8_t *master) {
    uint8_t key[16], auth[20];
    derive(master, 0, key, 16);
    derive(master, 1, auth, 20);
    derive(master, 2, ctx->salt, 14);
    ctx->aes = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(ctx->aes, EVP_aes_128_ctr(), NULL, key, NULL);
    ctx->hmac = HMAC_CTX_new();
    HMAC_Init_ex(ctx->hmac, auth, 20, EVP_sha1(), NULL);
    ctx->roc = 0;
    ctx->s_l = 0;
    ctx->seen = 0;
}

static void free_session(srtp_ctx_t *ctx) {
    EVP_CIPHER_CTX_free(ctx->aes);
    HMAC_CTX_free(ctx->hmac);
}

static int header_length(const uint8_t *p, int len) {
    int h = 12 + 4 * (p[0] & 0x0F);
    if (p[0] & 0x10) {
        if (len < h + 4) return -1;
        h += 4 + 4 * (p[h + 2] << 8 | p[h + 3]);
    }
    return h <= len ? h : -1;
}

/* AES-CM over the payload (RFC 3711 4.1.1) and the 80-bit HMAC-SHA1 tag over packet || ROC. */
static void keystream_xor(srtp_ctx_t *ctx, uint8_t *p, int h, int len, uint32_t roc) {
    uint8_t iv[16] = {0};
    memcpy(iv, ctx->salt, 14);
    for (int i = 0; i < 4; i++) iv[4 + i] ^= p[8 + i];
    uint8_t idx[6] = {roc >> 24, roc >> 16, roc >> 8, roc, p[2], p[3]};
    for (int i = 0; i < 6; i++) iv[8 + i] ^= idx[i];
    int n;
    EVP_EncryptInit_ex(ctx->aes, NULL, NULL, NULL, iv);
    EVP_EncryptUpdate(ctx->aes, p + h, &n, p + h, len - h);
}

static void tag(srtp_ctx_t *ctx, const uint8_t *p, int len, uint32_t roc, uint8_t *out) {
    uint8_t r[4] = {roc >> 24, roc >> 16, roc >> 8, roc}, md[20];
    unsigned int n;
    HMAC_Init_ex(ctx->hmac, NULL, 0, NULL, NULL);
    HMAC_Update(ctx->hmac, p, len);
    HMAC_Update(ctx->hmac, r, 4);
    HMAC_Final(ctx->hmac, md, &n);
    memcpy(out, md, SRTP_TAG);
}

static int srtp_protect_packet(srtp_ctx_t *ctx, uint8_t *p, int *len) {
    int h = header_length(p, *len);
    if (h < 0) return -1;
    uint16_t seq = p[2] << 8 | p[3];
    if (ctx->seen && seq < ctx->s_l && ctx->s_l - seq > 32768) ctx->roc++;
    ctx->s_l = seq;
    ctx->seen = 1;
    keystream_xor(ctx, p, h, *len, ctx->roc);
    tag(ctx, p, *len, ctx->roc, p + *len);
    *len += SRTP_TAG;
    return 0;
}

static int srtp_unprotect_packet(srtp_ctx_t *ctx, uint8_t *p, int *len) {
    if (*len < 12 + SRTP_TAG) return -1;
    int body = *len - SRTP_TAG, h = header_length(p, body);
    if (h < 0) return -1;
    uint16_t seq = p[2] << 8 | p[3];
    uint32_t roc = ctx->roc;  /* RFC 3711 appendix A estimate */
    if (ctx->seen) {
        if (ctx->s_l < 32768) {
            if (seq > ctx->s_l + 32768) roc--;
        } else if (ctx->s_l - 32768 > seq) {
            roc++;
        }
    }
    uint8_t expect[SRTP_TAG];
    tag(ctx, p, body, roc, expect);
    if (CRYPTO_memcmp(expect, p + body, SRTP_TAG) != 0) return -1;
    keystream_xor(ctx, p, h, body, roc);
    if (!ctx->seen || roc > ctx->roc || (roc == ctx->roc && seq > ctx->s_l)) {
        ctx->roc = roc;
        ctx->s_l = seq;
    }
    ctx->seen = 1;
    *len = body;
    return 0;
}
#endif

static int hexkey(const char *hex, uint8_t *out) {
    for (int i = 0; i < KEY_SALT; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = v;
    }
    return 0;
}

static int nsock;
static int spin;       /* argv[2] "spin": poll without sleeping (a remote phone's receive costs the relay nothing) */
static int *fds;       /* side a: fds[0..nsock), side b: fds[nsock..2*nsock) */
static int *fd_side;   /* indexed by fd */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | p[2] << 8 | p[3]; }

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int open_socket(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        perror("rtpgen: socket");
        exit(1);
    }
    return fd;
}

static int port_of(int fd) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

static double pct(int64_t *v, size_t n, double q) { return n ? v[(size_t)(n * q) < n ? (size_t)(n * q) : n - 1] : 0; }

static void run(double duration, double warmup, int echo, int direct, int ncalls, int *ports, uint8_t *keys, int epfd) {
    int nstreams = 2 * ncalls + direct;
    uint8_t sbuf[PACKET + SRTP_TAG + 16];
    sessions = NULL;
    nsessions_calls = 0;
#ifdef WITH_SRTP
    if (keys) {
        sessions = calloc(4 * (size_t)ncalls, sizeof *sessions);
        for (int c = 0; c < ncalls; c++)
            for (int k = 0; k < 4; k++)
                new_session(&sessions[4 * c + k], keys + (4 * (size_t)c + k) * KEY_SALT);
        nsessions_calls = ncalls;
    }
#else
    (void)keys;
#endif
    (void)sbuf;
    stream_t *streams = calloc(nstreams, sizeof *streams);
    int *slot_count = calloc(SLOTS, sizeof *slot_count);
    stream_t ***slots = calloc(SLOTS, sizeof *slots);
    for (int s = 0; s < SLOTS; s++) slots[s] = calloc(nstreams, sizeof **slots);
    for (int i = 0; i < nstreams; i++) {
        stream_t *st = &streams[i];
        int slot;
        st->to.sin_family = AF_INET;
        st->to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (i < 2 * ncalls) {
            int call = i / 2, dir = i % 2;
            st->fd = fds[dir * nsock + call % nsock];
            st->to.sin_port = htons(ports[2 * call + dir]);
            st->call = call;
            st->dir = dir;
            st->ssrc = (call << 1) | dir;
            slot = call % SLOTS;
            st->tx = sessions ? &sessions[4 * call + 2 * dir] : NULL;
        } else {
            int k = i - 2 * ncalls;
            st->fd = fds[(k + 1) % nsock];
            st->to.sin_port = htons(port_of(fds[nsock + k % nsock]));
            st->call = k;
            st->dir = 2;
            st->ssrc = 0xFFFF0000u + k;
            slot = k * 7 % SLOTS;
        }
        st->buf[0] = 0x80;
        slots[slot][slot_count[slot]++] = st;
    }
    size_t cap = (size_t)(2.0 * ncalls * 50 * (duration + 1)) + 1024, ndelay = 0, ndirect = 0, nlate = 0;
    size_t dcap = (size_t)(direct * 50 * (duration + 1)) + 1024, lcap = (size_t)(1000 * (duration + warmup + 1)) + 64;
    int64_t *delays = malloc(cap * sizeof *delays), *ddelays = malloc(dcap * sizeof *ddelays);
    int64_t *late = malloc(lcap * sizeof *late);
    int64_t start = now_ns() + 50000000LL, measure_from = start + (int64_t)(warmup * 1e9);
    int64_t stop_at = measure_from + (int64_t)(duration * 1e9), drain_until = stop_at + 500000000LL;
    int64_t slot_ns = PERIOD_NS / SLOTS, next_slot = start;
    long sent = 0, sent_measured = 0, received = 0, received_measured = 0, misrouted = 0, send_errors = 0;
    long srtp_failures = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.fd = tfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);
    uint8_t rbuf[2048];
    struct epoll_event events[256];
    for (long j = 0;;) {
        int64_t now = now_ns();
        if (now >= next_slot && next_slot < stop_at) {
            if (nlate < lcap) late[nlate++] = now - next_slot;
            uint32_t seq = (uint32_t)(j / SLOTS);
            stream_t **list = slots[j % SLOTS];
            for (int k = 0, n = slot_count[j % SLOTS]; k < n; k++) {
                stream_t *st = list[k];
                int64_t t = now_ns();
                uint8_t *b = st->buf;
                b[2] = seq >> 8; b[3] = seq;
                put32(b + 4, seq * 160);
                put32(b + 8, st->ssrc);
                put32(b + 12, st->call);
                b[16] = st->dir;
                put32(b + 17, seq);
                put32(b + 21, (uint32_t)((uint64_t)t >> 32));
                put32(b + 25, (uint32_t)t);
                int len = PACKET;
#ifdef WITH_SRTP
                if (st->tx) {
                    memcpy(sbuf, b, PACKET);
                    b = sbuf;
                    if (srtp_protect_packet(st->tx, b, &len) < 0) {
                        srtp_failures++;
                        continue;
                    }
                }
#endif
                if (sendto(st->fd, b, len, 0, (struct sockaddr *)&st->to, sizeof st->to) < 0) {
                    send_errors++;
                    continue;
                }
                if (st->dir == 2) continue;
                sent++;
                if (t >= measure_from && t < stop_at) sent_measured++;
            }
            j++;
            next_slot = start + j * slot_ns;
            continue;
        }
        if (now >= drain_until) break;
        if (!spin) {
            int64_t wake = next_slot < stop_at ? next_slot : drain_until;
            struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(epfd, events, 256, spin ? 0 : 100);
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.fd;
            if (fd == tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0) { /* spurious */ }
                continue;
            }
            int expect = echo ? fd_side[fd] : 1 - fd_side[fd];
            for (;;) {
                ssize_t len = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
                if (len < 0) break;
                int64_t arrived = now_ns();
                if (len < 29) { misrouted++; continue; }
#ifdef WITH_SRTP
                uint32_t ssrc = get32(rbuf + 8);
                if (sessions && ssrc < 0xFFFF0000u) {
                    uint32_t call = ssrc >> 1;
                    int rlen = (int)len;
                    if (call >= (uint32_t)nsessions_calls ||
                        srtp_unprotect_packet(&sessions[4 * call + 2 * fd_side[fd] + 1], rbuf, &rlen) < 0) {
                        srtp_failures++;
                        continue;
                    }
                    len = rlen;
                }
#endif
                int dir = rbuf[16];
                int64_t sent_ns = (int64_t)((uint64_t)get32(rbuf + 21) << 32 | get32(rbuf + 25));
                if (dir != expect) {
                    if (dir == 2) {
                        if (sent_ns >= measure_from && sent_ns < stop_at && ndirect < dcap)
                            ddelays[ndirect++] = arrived - sent_ns;
                        continue;
                    }
                    misrouted++;
                }
                received++;
                if (sent_ns >= measure_from && sent_ns < stop_at) {
                    received_measured++;
                    if (ndelay < cap) delays[ndelay++] = arrived - sent_ns;
                }
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    epoll_ctl(epfd, EPOLL_CTL_DEL, tfd, NULL);
    close(tfd);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6;
    qsort(delays, ndelay, sizeof *delays, cmp64);
    qsort(ddelays, ndirect, sizeof *ddelays, cmp64);
    qsort(late, nlate, sizeof *late, cmp64);
    long lost = sent_measured - received_measured;
    double base = ndelay ? delays[0] : 0, dbase = ndirect ? ddelays[0] : 0;
    double raw99 = ndelay ? (pct(delays, ndelay, 0.99) - base) / 1e6 : 1e9;
    double direct99 = ndirect ? (pct(ddelays, ndirect, 0.99) - dbase) / 1e6 : 0;
    double added = raw99 - direct99 > 0 ? raw99 - direct99 : 0;
    printf("{\"calls\": %d, \"sent\": %ld, \"received\": %ld, \"sent_measured\": %ld, \"received_measured\": %ld, "
           "\"lost\": %ld, \"loss\": %.8f, \"misrouted\": %ld, \"send_errors\": %ld, \"generator_cpu\": %.4f, "
           "\"delay_min_ms\": %.4f, \"delay_p50_ms\": %.4f, \"jitter_p90_ms\": %.4f, \"jitter_max_ms\": %.4f, "
           "\"raw_jitter_p99_ms\": %.4f, \"direct_jitter_p99_ms\": %.4f, \"jitter_p99_ms\": %.4f, "
           "\"send_late_p99_ms\": %.4f, \"srtp\": %d, \"srtp_failures\": %ld}\n",
           ncalls, sent, received, sent_measured, received_measured, lost,
           sent_measured ? (double)lost / sent_measured : 1.0, misrouted, send_errors, cpu, base / 1e6,
           ndelay ? pct(delays, ndelay, 0.5) / 1e6 : 0, ndelay ? (pct(delays, ndelay, 0.9) - base) / 1e6 : 0,
           ndelay ? (delays[ndelay - 1] - base) / 1e6 : 0, raw99, direct99, added,
           nlate ? pct(late, nlate, 0.99) / 1e6 : 0, sessions != NULL, srtp_failures);
    fflush(stdout);
    for (int s = 0; s < SLOTS; s++) free(slots[s]);
    free(slots); free(slot_count); free(streams); free(delays); free(ddelays); free(late);
#ifdef WITH_SRTP
    for (int k = 0; sessions && k < 4 * nsessions_calls; k++) free_session(&sessions[k]);
#endif
    free(sessions);
    sessions = NULL;
}

int main(int argc, char **argv) {
    nsock = argc > 1 ? atoi(argv[1]) : 64;
    spin = argc > 2 && strcmp(argv[2], "spin") == 0;
    if (nsock < 1) nsock = 1;
    fds = calloc(2 * nsock, sizeof *fds);
    int epfd = epoll_create1(0), maxfd = 0;
    for (int i = 0; i < 2 * nsock; i++) {
        fds[i] = open_socket();
        if (fds[i] > maxfd) maxfd = fds[i];
    }
    fd_side = calloc(maxfd + 1, sizeof *fd_side);
    printf("{\"a\": [");
    for (int i = 0; i < 2 * nsock; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &ev);
        fd_side[fds[i]] = i >= nsock;
        printf("%s%d", i == nsock ? "], \"b\": [" : (i ? ", " : ""), port_of(fds[i]));
    }
    printf("], \"srtp\": %d}\n", HAVE_SRTP);
    fflush(stdout);
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        double duration, warmup;
        int echo, direct, ncalls, srtp = 0;
        if (sscanf(line, "run %lf %lf %d %d %d %d", &duration, &warmup, &echo, &direct, &ncalls, &srtp) < 5) break;
        if (srtp && !HAVE_SRTP) {
            fprintf(stderr, "rtpgen: built without SRTP (-DWITH_SRTP -lcrypto)\n");
            return 1;
        }
        int *ports = calloc(2 * (size_t)ncalls + 2, sizeof *ports);
        uint8_t *keys = srtp ? calloc(4 * (size_t)ncalls + 1, KEY_SALT) : NULL;
        for (int i = 0; i < ncalls; i++) {
            char k[4][2 * KEY_SALT + 1];
            if (!fgets(line, sizeof line, stdin)) return 1;
            int got = sscanf(line, "%d %d %60s %60s %60s %60s", &ports[2 * i], &ports[2 * i + 1], k[0], k[1], k[2], k[3]);
            if (got < 2 || (srtp && got != 6)) return 1;
            for (int j = 0; srtp && j < 4; j++)
                if (hexkey(k[j], keys + (4 * (size_t)i + j) * KEY_SALT) < 0) return 1;
        }
        run(duration, warmup, echo, direct, ncalls, ports, keys, epfd);
        free(ports);
        free(keys);
    }
    return 0;
}
