// counter.c: the C twin of guests/counter, written from abi/ABI.md alone,
// with no SDK and no protobuf library. It answers every request the way the
// Go module does; the conformance tests (host/module/conformance) hold both
// to that.
//
// Build (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32):
//
//   clang --target=wasm32-wasi -mexec-model=reactor -O2 -o counter.wasm counter.c
//
// Configuration keys: resource (default example.com/counter), count (default 4).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(name) __attribute__((import_module("wasmlet"), import_name(name)))

IMPORT("config_get")
int32_t config_get(const char *key, int32_t key_len, char *buf, int32_t buf_len);

// ---- buffers ------------------------------------------------------------------

// The request buffer: handed to the host by wasmlet_alloc, valid until the
// next wasmlet_alloc.
static uint8_t *in_buf;
static int32_t in_cap;

// The reply buffer: valid until the next call into the module.
static uint8_t *out;
static uint32_t out_len, out_cap;
static int out_failed;

static void reserve(uint32_t n) {
  if (out_len + n <= out_cap) return;
  uint32_t cap = out_cap ? out_cap : 256;
  while (cap < out_len + n) cap *= 2;
  uint8_t *p = realloc(out, cap);
  if (!p) { out_failed = 1; return; }
  out = p;
  out_cap = cap;
}

static void put_byte(uint8_t b) {
  reserve(1);
  if (!out_failed) out[out_len++] = b;
}

static void put_varint(uint64_t v) {
  while (v >= 0x80) { put_byte((uint8_t)v | 0x80); v >>= 7; }
  put_byte((uint8_t)v);
}

static void put_tag(uint32_t field, uint32_t wire) { put_varint((uint64_t)field << 3 | wire); }

static void put_bytes(uint32_t field, const char *s, uint32_t n) {
  put_tag(field, 2);
  put_varint(n);
  reserve(n);
  if (!out_failed) { memcpy(out + out_len, s, n); out_len += n; }
}

static void put_str(uint32_t field, const char *s) {
  if (*s) put_bytes(field, s, (uint32_t)strlen(s));
}

static void put_uint(uint32_t field, uint64_t v) {
  if (v) { put_tag(field, 0); put_varint(v); }
}

// Nested messages: write the body after a placeholder, then move it to make
// room for its length.
static uint32_t begin(uint32_t field) {
  put_tag(field, 2);
  return out_len;
}

static void end(uint32_t start) {
  uint32_t n = out_len - start;
  uint8_t len[5];
  uint32_t k = 0, v = n;
  while (v >= 0x80) { len[k++] = (uint8_t)v | 0x80; v >>= 7; }
  len[k++] = (uint8_t)v;
  reserve(k);
  if (out_failed) return;
  memmove(out + start + k, out + start, n);
  memcpy(out + start, len, k);
  out_len += k;
}

static void put_map_entry(uint32_t field, const char *k, const char *v) {
  uint32_t m = begin(field);
  put_bytes(1, k, (uint32_t)strlen(k));
  put_bytes(2, v, (uint32_t)strlen(v));
  end(m);
}

// Typed attributes: Device.typed_attributes (field 6) is a map<string,
// Attribute>, so each is an entry with the name in field 1 and an Attribute
// message in field 2, which sets exactly one of int_value (1, varint),
// bool_value (2, varint), string_value (3) and version_value (4), even when
// the value is 0 or false.
static uint32_t begin_attribute(const char *name) {
  uint32_t entry = begin(6);
  put_bytes(1, name, (uint32_t)strlen(name));
  return entry;
}

static void put_attribute_int(const char *name, int64_t v) {
  uint32_t entry = begin_attribute(name), value = begin(2);
  put_tag(1, 0);
  put_varint((uint64_t)v);
  end(value);
  end(entry);
}

static void put_attribute_bool(const char *name, int v) {
  uint32_t entry = begin_attribute(name), value = begin(2);
  put_tag(2, 0);
  put_varint(v ? 1 : 0);
  end(value);
  end(entry);
}

// field: 3 for a string, 4 for a version.
static void put_attribute_string(const char *name, uint32_t field, const char *v) {
  uint32_t entry = begin_attribute(name), value = begin(2);
  put_bytes(field, v, (uint32_t)strlen(v));
  end(value);
  end(entry);
}

// Result: reply address in bits 0-31, length in bits 32-62, error flag in 63.
static uint64_t result(int is_error) {
  if (out_failed) return 0;
  uint64_t r = (uint64_t)(uintptr_t)out | (uint64_t)out_len << 32;
  return is_error ? r | 1ULL << 63 : r;
}

// error_reply answers with an Error message.
static uint64_t error_reply(uint32_t code, const char *msg) {
  out_len = 0;
  out_failed = 0;
  put_uint(1, code);
  put_str(2, msg);
  return result(1);
}

#define CODE_INVALID_ARGUMENT 1

// ---- decoding -------------------------------------------------------------------

typedef struct { const uint8_t *p, *end; } reader;

static int get_varint(reader *r, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return 0;
    uint8_t b = *r->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) return 1;
  }
  return 0;
}

// next_field reads one field: its number, wire type, and value (varints) or
// payload (length-delimited). Other wire types are skipped. Returns 0 at the
// end, -1 on malformed input.
static int next_field(reader *r, uint32_t *field, uint32_t *wire, uint64_t *val, reader *payload) {
  if (r->p >= r->end) return 0;
  uint64_t tag;
  if (!get_varint(r, &tag) || tag >> 3 == 0) return -1;
  *field = (uint32_t)(tag >> 3);
  *wire = (uint32_t)(tag & 7);
  switch (*wire) {
  case 0: return get_varint(r, val) ? 1 : -1;
  case 1: if (r->end - r->p < 8) return -1; r->p += 8; return 1;
  case 5: if (r->end - r->p < 4) return -1; r->p += 4; return 1;
  case 2: {
    uint64_t n;
    if (!get_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
    payload->p = r->p;
    payload->end = r->p + n;
    r->p += n;
    return 1;
  }
  }
  return -1;
}

// ---- configuration ----------------------------------------------------------------

static char resource[256];
static int count;

// Configuration is read once per instance, when _initialize runs the
// constructors.
__attribute__((constructor)) static void load_config(void) {
  int32_t n = config_get("resource", 8, resource, sizeof resource - 1);
  if (n < 0 || n > (int32_t)sizeof resource - 1) strcpy(resource, "example.com/counter");
  else resource[n] = 0;

  char buf[16];
  count = 4;
  n = config_get("count", 5, buf, sizeof buf - 1);
  if (n > 0 && n < (int32_t)sizeof buf) {
    long v = 0;
    int ok = 1;
    for (int i = 0; i < n; i++) {
      if (buf[i] < '0' || buf[i] > '9' || v > 100000) { ok = 0; break; }
      v = v * 10 + (buf[i] - '0');
    }
    if (ok && v <= 100000) count = (int)v;
  }
}

// ---- exports ------------------------------------------------------------------------

EXPORT("wasmlet_abi_version") int32_t abi_version(void) { return 1; }

EXPORT("wasmlet_alloc") uint8_t *wasmlet_alloc(int32_t size) {
  if (size < 0) return 0;
  if (size > in_cap) {
    free(in_buf);
    in_buf = malloc(size ? (size_t)size : 1);
    in_cap = in_buf ? size : 0;
  }
  return in_buf;
}

EXPORT("wasmlet_describe") uint64_t describe(uint8_t *p, int32_t n) {
  (void)p; (void)n;
  out_len = 0;
  out_failed = 0;
  put_uint(1, 2); // kind: device source
  put_str(2, "counter");
  put_str(3, "1.0.0");
  put_str(5, resource);
  put_str(6, "discover");
  put_str(6, "allocate");
  put_str(6, "preferred_allocation");
  put_str(6, "prestart");
  put_str(8, "identical counted devices, for examples and tests");
  return result(0);
}

static void itoa10(int32_t v, char *buf) {
  char tmp[12];
  int k = 0;
  uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
  do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *buf++ = '-';
  for (int i = 0; i < k; i++) buf[i] = tmp[k - 1 - i];
  buf[k] = 0;
}

EXPORT("wasmlet_discover") uint64_t discover(uint8_t *p, int32_t n) {
  (void)p; (void)n;
  out_len = 0;
  out_failed = 0;
  char idx[12], id[16], env[24];
  for (int i = 0; i < count; i++) {
    itoa10(i, idx);
    strcpy(id, "dev-");
    strcat(id, idx);
    strcpy(env, "COUNTER_");
    strcat(env, idx);
    uint32_t dev = begin(1);
    put_str(1, id);
    put_tag(3, 2); // numa_nodes, packed: one varint
    put_varint(1);
    put_varint((uint64_t)(i % 2));
    put_map_entry(4, "index", idx);
    uint32_t edits = begin(5);
    put_map_entry(1, env, id);
    end(edits);
    put_attribute_bool("even", i % 2 == 0);
    put_attribute_string("firmware", 4, "1.0.0");
    put_attribute_int("index", i);
    put_attribute_string("model", 3, "counter");
    end(dev);
  }
  return result(0);
}

// ids_joined collects the repeated string field 1 of a request, joined by
// commas, and string field 2 (the workload).
static int read_ids(uint8_t *p, int32_t n, char **ids, char **workload, int *nids) {
  reader r = {p, p + n}, s;
  uint32_t field, wire;
  uint64_t val;
  size_t cap = 1, len = 0;
  *ids = malloc(cap);
  *workload = calloc(1, 1);
  *nids = 0;
  if (!*ids || !*workload) return 0;
  (*ids)[0] = 0;
  int rc;
  while ((rc = next_field(&r, &field, &wire, &val, &s)) > 0) {
    if (wire != 2) continue;
    size_t sn = (size_t)(s.end - s.p);
    if (field == 1) {
      char *g = realloc(*ids, len + sn + 2);
      if (!g) return 0;
      *ids = g;
      if (*nids) (*ids)[len++] = ',';
      memcpy(*ids + len, s.p, sn);
      len += sn;
      (*ids)[len] = 0;
      (*nids)++;
    } else if (field == 2) {
      char *w = realloc(*workload, sn + 1);
      if (!w) return 0;
      *workload = w;
      memcpy(w, s.p, sn);
      w[sn] = 0;
    }
  }
  return rc == 0;
}

EXPORT("wasmlet_allocate") uint64_t allocate(uint8_t *p, int32_t n) {
  char *ids, *workload;
  int nids;
  if (!read_ids(p, n, &ids, &workload, &nids)) {
    free(ids); free(workload);
    return error_reply(0, "malformed AllocateRequest");
  }
  if (nids == 0) {
    free(ids); free(workload);
    return error_reply(CODE_INVALID_ARGUMENT, "no devices requested");
  }
  out_len = 0;
  out_failed = 0;
  put_map_entry(1, "COUNTER_DEVICES", ids); // envs, keys in sorted order
  put_map_entry(1, "COUNTER_WORKLOAD", workload);
  put_map_entry(4, "example.com/counter", ids); // annotations
  free(ids); free(workload);
  return result(0);
}

static int contains(const reader *list, int n, const uint8_t *s, size_t sn) {
  for (int i = 0; i < n; i++)
    if ((size_t)(list[i].end - list[i].p) == sn && memcmp(list[i].p, s, sn) == 0) return 1;
  return 0;
}

EXPORT("wasmlet_preferred_allocation") uint64_t preferred_allocation(uint8_t *p, int32_t n) {
  reader r = {p, p + n}, s;
  uint32_t field, wire;
  uint64_t val;
  int32_t size = 0;
  int navail = 0, nmust = 0, rc;
  // First pass: count, to size the arrays.
  while ((rc = next_field(&r, &field, &wire, &val, &s)) > 0) {
    if (field == 1 && wire == 2) navail++;
    if (field == 2 && wire == 2) nmust++;
    if (field == 3 && wire == 0) size = (int32_t)val;
  }
  if (rc < 0) return error_reply(0, "malformed PreferredAllocationRequest");
  if (size < 0 || size > navail) {
    char msg[96], a[13], b[13];
    itoa10(size, a);
    itoa10(navail, b);
    strcpy(msg, "size ");
    strcat(msg, a);
    strcat(msg, " exceeds the ");
    strcat(msg, b);
    strcat(msg, " available devices");
    return error_reply(CODE_INVALID_ARGUMENT, msg);
  }
  reader *avail = malloc(sizeof(reader) * (size_t)(navail + 1));
  reader *must = malloc(sizeof(reader) * (size_t)(nmust + 1));
  reader *chosen = malloc(sizeof(reader) * (size_t)(size + 1));
  if (!avail || !must || !chosen) {
    free(avail); free(must); free(chosen);
    return error_reply(4, "out of memory");
  }
  int ia = 0, im = 0, nc = 0;
  r.p = p;
  while (next_field(&r, &field, &wire, &val, &s) > 0) {
    if (field == 1 && wire == 2) avail[ia++] = s;
    if (field == 2 && wire == 2) must[im++] = s;
  }
  for (int i = 0; i < nmust && nc < size; i++)
    if (!contains(chosen, nc, must[i].p, (size_t)(must[i].end - must[i].p))) chosen[nc++] = must[i];
  for (int i = 0; i < navail && nc < size; i++)
    if (!contains(chosen, nc, avail[i].p, (size_t)(avail[i].end - avail[i].p))) chosen[nc++] = avail[i];
  out_len = 0;
  out_failed = 0;
  for (int i = 0; i < nc; i++) put_bytes(1, (const char *)chosen[i].p, (uint32_t)(chosen[i].end - chosen[i].p));
  free(avail); free(must); free(chosen);
  return result(0);
}

EXPORT("wasmlet_prestart") uint64_t prestart(uint8_t *p, int32_t n) {
  (void)p; (void)n;
  out_len = 0;
  out_failed = 0;
  return result(0);
}
