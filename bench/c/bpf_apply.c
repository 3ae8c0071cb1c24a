/*
 * The C baseline for bench/bpf-apply.ts: the same LPM-trie map (12-byte keys and values, the
 * distill layout), the same entries, the same syscalls. Prints one JSON object per round with
 * entries/s for single and batched updates and deletes.
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KEY_SIZE 12
#define VALUE_SIZE 12
#define BATCH 1024

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(uint8_t *keys, uint8_t *values, int n) {
  for (int i = 0; i < n; i++) {
    uint8_t *k = keys + i * KEY_SIZE, *v = values + i * VALUE_SIZE;
    uint32_t prefix = 64, id = i + 1;
    memcpy(k, &prefix, 4);
    memcpy(k + 4, &id, 4);
    k[8] = 0;
    k[9] = 6;
    k[10] = 0;
    k[11] = 80;
    memset(v, 0, VALUE_SIZE);
    v[2] = 24 << 3;
    v[4] = 1;
  }
}

static int create_map(int capacity) {
  union bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.map_type = BPF_MAP_TYPE_LPM_TRIE;
  a.key_size = KEY_SIZE;
  a.value_size = VALUE_SIZE;
  a.max_entries = capacity;
  a.map_flags = BPF_F_NO_PREALLOC;
  return sys_bpf(BPF_MAP_CREATE, &a);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 16384;
  int rounds = argc > 2 ? atoi(argv[2]) : 7;
  uint8_t *keys = malloc(n * KEY_SIZE), *values = malloc(n * VALUE_SIZE);
  fill(keys, values, n);
  for (int r = 0; r < rounds; r++) {
    int fd = create_map(n);
    if (fd < 0) { perror("BPF_MAP_CREATE"); return 1; }
    union bpf_attr a;
    double t0 = now();
    for (int i = 0; i < n; i++) {
      memset(&a, 0, sizeof(a));
      a.map_fd = fd; a.key = (uint64_t)(keys + i * KEY_SIZE); a.value = (uint64_t)(values + i * VALUE_SIZE);
      if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) { perror("update"); return 1; }
    }
    double t1 = now();
    for (int i = 0; i < n; i++) {
      memset(&a, 0, sizeof(a));
      a.map_fd = fd; a.key = (uint64_t)(keys + i * KEY_SIZE);
      if (sys_bpf(BPF_MAP_DELETE_ELEM, &a) < 0) { perror("delete"); return 1; }
    }
    double t2 = now();
    for (int i = 0; i < n; i += BATCH) {
      memset(&a, 0, sizeof(a));
      a.batch.keys = (uint64_t)(keys + i * KEY_SIZE); a.batch.values = (uint64_t)(values + i * VALUE_SIZE);
      a.batch.count = n - i < BATCH ? n - i : BATCH; a.batch.map_fd = fd;
      if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a) < 0) { perror("update batch"); return 1; }
    }
    double t3 = now();
    for (int i = 0; i < n; i += BATCH) {
      memset(&a, 0, sizeof(a));
      a.batch.keys = (uint64_t)(keys + i * KEY_SIZE);
      a.batch.count = n - i < BATCH ? n - i : BATCH; a.batch.map_fd = fd;
      if (sys_bpf(BPF_MAP_DELETE_BATCH, &a) < 0) { perror("delete batch"); return 1; }
    }
    double t4 = now();
    close(fd);
    printf("{\"singleUpdate\":%.0f,\"singleDelete\":%.0f,\"batchUpdate\":%.0f,\"batchDelete\":%.0f}\n", n / (t1 - t0), n / (t2 - t1), n / (t3 - t2), n / (t4 - t3));
  }
  return 0;
}
