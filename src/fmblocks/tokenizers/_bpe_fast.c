/* fmblocks.tokenizers._bpe_fast: byte-level BPE encoding in C, the same rule as the pure-Python path.

   One call, Encoder.encode(text) -> list[int], does the three steps of `bpe.py` for text without
   special tokens: split by the "gpt2" or "gpt4" pattern, merge each chunk's bytes by rank (tiktoken's
   rule: lowest-ranked concatenation first, leftmost on ties), look the parts' ids up.

   - Splitting is a hand-written matcher for the two patterns of `pretokenize.SPLIT_PATTERNS`, one
     branch per alternative, tried in the pattern's order. Character classes (\p{L}, \p{N}, \s) and
     the case-insensitive contraction letters come from tables that Python builds with the `regex`
     module (`fast.py`), so both paths split alike, code point for code point.
   - Ranks live in an open-addressing hash table over the token bytes (FNV-1a).
   - Merging: a scan (O(n^2)) for chunks under HEAP_FROM bytes, a binary heap over a linked list of
     parts (O(n log n), `bpe_merge.merge_heap`) for longer ones.
   The work runs without the GIL (the text's UTF-8 buffer and the tables do not change meanwhile), so
   threads encode in parallel. Text with lone surrogates has no UTF-8: ValueError, and the caller
   falls back to the Python path, which names the character.

   Encoder.encode_batch(texts, n_threads) -> list[list[int] | None] does many texts in one call: it
   takes every text's UTF-8 buffer with the GIL, releases it, and n_threads pthreads (the calling
   thread one of them) take the next document from a shared atomic counter, each appending ids to
   its own buffer; back under the GIL the lists are built. A text with no UTF-8 gives None there.
   The lists share one int object per rank, made once per Encoder (about 3 MB for cl100k_base), so
   building them, the part that needs the GIL, is an INCREF per id rather than an allocation. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define CLS_L 1
#define CLS_N 2
#define CLS_S 4
#define NO_RANK UINT32_MAX
#define HEAP_FROM 64
#define N_CODE_POINTS 0x110000
#define BLOOM_BITS (1u << 20)
#define MAX_THREADS 256

typedef struct {
    uint64_t head;  /* the token's first 8 bytes (zero-padded): most lookups compare only this */
    uint32_t len;   /* 0 = empty slot */
    uint32_t rank;
} Slot;

typedef struct {
    PyObject_HEAD
    uint8_t *blob;           /* all token bytes, back to back */
    uint32_t *offset, *len;  /* token rank -> its bytes in blob */
    Slot *slots;             /* hash table over the token bytes */
    uint64_t mask;
    uint64_t *seen;          /* BLOOM_BITS bits, one per hash value: most failed lookups stop here, in cache */
    uint32_t byte_rank[256];
    int gpt4;
    PyObject *classes_obj;   /* bytes of N_CODE_POINTS class bits, kept alive */
    const uint8_t *classes;
    uint32_t fold[64][2];  /* (code point, ASCII letter) pairs for (?i:) */
    int n_fold;
    PyObject **id_objs;    /* rank -> its int object: the result lists share them instead of allocating */
    Py_ssize_t n_ids;
} Encoder;

static inline uint64_t head_of(const uint8_t *s, size_t n) {
    uint64_t head = 0;
    memcpy(&head, s, n < 8 ? n : 8);
    return head;
}

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33;
    return h;
}

static inline uint64_t hash_bytes(const uint8_t *s, size_t n, uint64_t head) {
    uint64_t h = head ^ (n * 0x9E3779B97F4A7C15ULL);
    for (size_t i = 8; i < n; i += 8) h = mix(h) ^ head_of(s + i, n - i);
    return mix(h);
}

static inline uint32_t lookup(const Encoder *e, const uint8_t *s, size_t n) {
    uint64_t head = head_of(s, n);
    uint64_t h = hash_bytes(s, n, head), bit = (h >> 40) & (BLOOM_BITS - 1), i = h & e->mask;
    if (!(e->seen[bit >> 6] >> (bit & 63) & 1)) return NO_RANK;
    for (;;) {
        const Slot *slot = &e->slots[i];
        if (slot->len == 0) return NO_RANK;
        if (slot->len == n && slot->head == head && (n <= 8 || memcmp(e->blob + e->offset[slot->rank] + 8, s + 8, n - 8) == 0))
            return slot->rank;
        i = (i + 1) & e->mask;
    }
}

/* ---- ids buffer ---- */
typedef struct { uint32_t *ids; size_t n, cap; } Ids;

static inline int push_id(Ids *out, uint32_t id) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 1024;
        uint32_t *grown = realloc(out->ids, cap * sizeof(uint32_t));
        if (!grown) return -1;
        out->ids = grown; out->cap = cap;
    }
    out->ids[out->n++] = id;
    return 0;
}

/* ---- merging one chunk ---- */
static int merge_scan(const Encoder *e, const uint8_t *s, size_t n, Ids *out) {
    uint32_t start[HEAP_FROM + 1], rank[HEAP_FROM], pair[HEAP_FROM];
    size_t m = n;  /* parts: s[start[i]:start[i+1]], rank[i]; pair[i] = rank of parts i and i+1 */
    for (size_t i = 0; i < n; i++) { start[i] = (uint32_t)i; rank[i] = e->byte_rank[s[i]]; }
    start[n] = (uint32_t)n;
    for (size_t i = 0; i + 1 < n; i++) pair[i] = lookup(e, s + i, 2);
    while (m > 1) {
        uint32_t best = NO_RANK; size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) if (pair[i] < best) { best = pair[i]; at = i; }
        if (best == NO_RANK) break;
        rank[at] = best;
        memmove(start + at + 1, start + at + 2, (m - at - 1) * sizeof(uint32_t));
        memmove(rank + at + 1, rank + at + 2, (m - at - 2) * sizeof(uint32_t));
        if (at + 2 < m) memmove(pair + at + 1, pair + at + 2, (m - at - 3) * sizeof(uint32_t));
        m--;
        if (at > 0) pair[at - 1] = lookup(e, s + start[at - 1], start[at + 1] - start[at - 1]);
        if (at + 1 < m) pair[at] = lookup(e, s + start[at], start[at + 2] - start[at]);
    }
    for (size_t i = 0; i < m; i++) if (push_id(out, rank[i])) return -1;
    return 0;
}

static inline void heap_push(uint64_t *heap, size_t *size, uint64_t key) {
    size_t i = (*size)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent] <= key) break;
        heap[i] = heap[parent]; i = parent;
    }
    heap[i] = key;
}

static inline uint64_t heap_pop(uint64_t *heap, size_t *size) {
    uint64_t top = heap[0], last = heap[--(*size)];
    size_t i = 0, n = *size;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap[child + 1] < heap[child]) child++;
        if (heap[child] >= last) break;
        heap[i] = heap[child]; i = child;
    }
    if (n) heap[i] = last;
    return top;
}

/* bpe_merge.merge_heap in C: heap keys rank * n + offset pop lowest rank first, leftmost on ties;
   an entry is stale when pair[offset] no longer equals its rank. */
static int merge_heap(const Encoder *e, const uint8_t *s, size_t n, Ids *out) {
    uint32_t *after = malloc(n * sizeof(uint32_t)), *before = malloc(n * sizeof(uint32_t));
    uint32_t *pair = malloc(n * sizeof(uint32_t));
    uint64_t *heap = malloc(3 * n * sizeof(uint64_t));
    size_t size = 0;
    int status = -1;
    if (!after || !before || !pair || !heap) goto done;
    for (size_t i = 0; i < n; i++) {
        after[i] = (uint32_t)(i + 1); before[i] = (uint32_t)i - 1;  /* UINT32_MAX: none */
        pair[i] = i + 1 < n ? lookup(e, s + i, 2) : NO_RANK;
        if (pair[i] != NO_RANK) heap_push(heap, &size, (uint64_t)pair[i] * n + i);
    }
    while (size) {
        uint64_t key = heap_pop(heap, &size);
        uint32_t r = (uint32_t)(key / n), i = (uint32_t)(key % n);
        if (pair[i] != r) continue;
        uint32_t j = after[i], k = after[j];
        pair[j] = NO_RANK;
        after[i] = k;
        if (k < n) {
            before[k] = i;
            pair[i] = lookup(e, s + i, after[k] - i);
            if (pair[i] != NO_RANK) heap_push(heap, &size, (uint64_t)pair[i] * n + i);
        } else {
            pair[i] = NO_RANK;
        }
        uint32_t h = before[i];
        if (h != UINT32_MAX) {
            pair[h] = lookup(e, s + h, k - h);
            if (pair[h] != NO_RANK) heap_push(heap, &size, (uint64_t)pair[h] * n + h);
        }
    }
    status = 0;
    for (uint32_t i = 0; i < n && status == 0; i = after[i]) status = push_id(out, lookup(e, s + i, after[i] - i));
done:
    free(after); free(before); free(pair); free(heap);
    return status;
}

static int merge_chunk(const Encoder *e, const uint8_t *s, size_t n, Ids *out) {
    uint32_t whole = lookup(e, s, n);
    if (whole != NO_RANK) return push_id(out, whole);
    return n < HEAP_FROM ? merge_scan(e, s, n, out) : merge_heap(e, s, n, out);
}

/* ---- splitting: UTF-8 -> chunk boundaries ---- */
static inline uint32_t decode(const uint8_t *s, size_t i, int *width) {
    uint8_t b = s[i];
    if (b < 0x80) { *width = 1; return b; }
    if (b < 0xE0) { *width = 2; return ((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F); }
    if (b < 0xF0) { *width = 3; return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F); }
    *width = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) | ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

enum { K_L, K_N, K_S, K_O };  /* one kind per character: letter, number, space, other */

static inline int kind_at(const Encoder *e, const uint8_t *s, size_t i, int *width) {
    uint8_t c = e->classes[decode(s, i, width)];
    return c & CLS_L ? K_L : c & CLS_N ? K_N : c & CLS_S ? K_S : K_O;
}

/* end of the run of `kind` characters from i; at most `limit` of them */
static inline size_t run_of(const Encoder *e, const uint8_t *s, size_t i, size_t n, int kind, size_t limit) {
    int w;
    for (size_t count = 0; i < n && count < limit && kind_at(e, s, i, &w) == kind; count++) i += w;
    return i;
}

/* the ASCII letter that code point c matches case-insensitively (the tables of `regex`), or 0 */
static inline int folded(const Encoder *e, uint32_t c) {
    if (c < 128) return (c >= 'A' && c <= 'Z') ? (int)(c + 32) : (int)c;
    for (int k = 0; k < e->n_fold; k++) if (e->fold[k][0] == c) return (int)e->fold[k][1];
    return 0;
}

/* '(?:[sdmt]|ll|ve|re): end of the contraction at i (s[i] == '\''), or 0 */
static size_t contraction(const Encoder *e, const uint8_t *s, size_t i, size_t n) {
    if (i + 1 >= n) return 0;
    int w1, w2;
    uint32_t c1 = decode(s, i + 1, &w1);
    int a = e->gpt4 ? folded(e, c1) : (int)c1;
    if (a == 's' || a == 'd' || a == 'm' || a == 't') return i + 1 + w1;
    if (i + 1 + w1 >= n) return 0;
    uint32_t c2 = decode(s, i + 1 + w1, &w2);
    int b = e->gpt4 ? folded(e, c2) : (int)c2;
    if ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e')) return i + 1 + w1 + w2;
    return 0;
}

/* the whitespace alternatives from i (a space character): \s++$ | (gpt4: \s*[\r\n]) | \s+(?!\S) | \s */
static size_t spaces(const Encoder *e, const uint8_t *s, size_t i, size_t n, int w0) {
    size_t j = i, last = i, newline_end = 0;
    int w, count = 0;
    while (j < n && kind_at(e, s, j, &w) == K_S) {
        if (s[j] == '\r' || s[j] == '\n') newline_end = j + 1;
        last = j; j += w; count++;
    }
    if (j == n) return n;
    if (e->gpt4 && newline_end) return newline_end;
    if (count >= 2) return last;
    return i + w0;
}

static size_t next_chunk_gpt2(const Encoder *e, const uint8_t *s, size_t i, size_t n) {
    int w0, w1;
    if (s[i] == '\'') { size_t end = contraction(e, s, i, n); if (end) return end; }
    int k0 = kind_at(e, s, i, &w0);
    if (s[i] == ' ' && i + 1 < n) {
        int k1 = kind_at(e, s, i + 1, &w1);
        if (k1 != K_S) return run_of(e, s, i + 1, n, k1, SIZE_MAX);
    }
    if (k0 != K_S) return run_of(e, s, i, n, k0, SIZE_MAX);
    return spaces(e, s, i, n, w0);
}

static size_t next_chunk_gpt4(const Encoder *e, const uint8_t *s, size_t i, size_t n) {
    int w0, w1;
    if (s[i] == '\'') { size_t end = contraction(e, s, i, n); if (end) return end; }
    int k0 = kind_at(e, s, i, &w0);
    if (k0 == K_L) return run_of(e, s, i, n, K_L, SIZE_MAX);
    int k1 = i + w0 < n ? kind_at(e, s, i + w0, &w1) : -1;
    if (k0 != K_N && s[i] != '\r' && s[i] != '\n' && k1 == K_L) return run_of(e, s, i + w0, n, K_L, SIZE_MAX);
    if (k0 == K_N) return run_of(e, s, i, n, K_N, 3);
    size_t start = (s[i] == ' ' && k1 == K_O) ? i + 1 : (k0 == K_O ? i : SIZE_MAX);
    if (start != SIZE_MAX) {
        size_t j = run_of(e, s, start, n, K_O, SIZE_MAX);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    return spaces(e, s, i, n, w0);
}

static int encode_utf8(const Encoder *e, const uint8_t *s, size_t n, Ids *out) {
    for (size_t i = 0; i < n;) {
        size_t end = e->gpt4 ? next_chunk_gpt4(e, s, i, n) : next_chunk_gpt2(e, s, i, n);
        if (merge_chunk(e, s + i, end - i, out)) return -1;
        i = end;
    }
    return 0;
}

/* ---- Python glue ---- */
static void Encoder_dealloc(Encoder *e) {
    free(e->blob); free(e->offset); free(e->len); free(e->slots); free(e->seen);
    for (Py_ssize_t r = 0; e->id_objs && r < e->n_ids; r++) Py_XDECREF(e->id_objs[r]);
    free(e->id_objs);
    Py_XDECREF(e->classes_obj);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* Encoder(tokens: list[bytes] (rank = index), split: "gpt2" | "gpt4", classes: bytes, fold: list[(int, str)]) */
static int Encoder_init(Encoder *e, PyObject *args, PyObject *Py_UNUSED(kwargs)) {
    PyObject *tokens, *classes, *fold;
    const char *split;
    if (!PyArg_ParseTuple(args, "O!sO!O!", &PyList_Type, &tokens, &split, &PyBytes_Type, &classes, &PyList_Type, &fold))
        return -1;
    if (strcmp(split, "gpt2") && strcmp(split, "gpt4")) { PyErr_SetString(PyExc_ValueError, "split must be gpt2 or gpt4"); return -1; }
    if (PyBytes_GET_SIZE(classes) != N_CODE_POINTS) { PyErr_SetString(PyExc_ValueError, "classes must have 0x110000 bytes"); return -1; }
    if (PyList_GET_SIZE(fold) > 64) { PyErr_SetString(PyExc_ValueError, "at most 64 fold pairs"); return -1; }
    e->gpt4 = split[3] == '4';
    Py_INCREF(classes); Py_XSETREF(e->classes_obj, classes);
    e->classes = (const uint8_t *)PyBytes_AS_STRING(classes);
    e->n_fold = 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(fold); k++) {
        unsigned int c; int letter;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(fold, k), "IC", &c, &letter)) return -1;
        e->fold[e->n_fold][0] = c; e->fold[e->n_fold][1] = (uint32_t)letter; e->n_fold++;
    }
    Py_ssize_t count = PyList_GET_SIZE(tokens);
    size_t total = 0;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *t = PyList_GET_ITEM(tokens, r);
        if (!PyBytes_Check(t) || PyBytes_GET_SIZE(t) == 0) { PyErr_SetString(PyExc_TypeError, "tokens must be non-empty bytes"); return -1; }
        total += PyBytes_GET_SIZE(t);
    }
    uint64_t capacity = 1024;
    while (capacity < 2 * (uint64_t)count) capacity <<= 1;
    e->blob = malloc(total + 1); e->offset = malloc((count + 1) * sizeof(uint32_t)); e->len = malloc((count + 1) * sizeof(uint32_t));
    e->slots = calloc(capacity, sizeof(Slot));
    e->seen = calloc(BLOOM_BITS / 64, sizeof(uint64_t));
    if (!e->blob || !e->offset || !e->len || !e->slots || !e->seen) { PyErr_NoMemory(); return -1; }
    e->mask = capacity - 1;
    for (int b = 0; b < 256; b++) e->byte_rank[b] = NO_RANK;
    size_t at = 0;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *t = PyList_GET_ITEM(tokens, r);
        size_t n = PyBytes_GET_SIZE(t);
        memcpy(e->blob + at, PyBytes_AS_STRING(t), n);
        e->offset[r] = (uint32_t)at; e->len[r] = (uint32_t)n;
        uint64_t head = head_of(e->blob + at, n), h = hash_bytes(e->blob + at, n, head), i = h & e->mask;
        uint64_t bit = (h >> 40) & (BLOOM_BITS - 1);
        e->seen[bit >> 6] |= 1ULL << (bit & 63);
        while (e->slots[i].len) i = (i + 1) & e->mask;
        e->slots[i] = (Slot){head, (uint32_t)n, (uint32_t)r};
        if (n == 1) e->byte_rank[e->blob[at]] = (uint32_t)r;
        at += n;
    }
    for (int b = 0; b < 256; b++)
        if (e->byte_rank[b] == NO_RANK) { PyErr_SetString(PyExc_ValueError, "tokens must hold all 256 single bytes"); return -1; }
    if (!(e->id_objs = calloc(count, sizeof(PyObject *)))) { PyErr_NoMemory(); return -1; }
    e->n_ids = count;
    for (Py_ssize_t r = 0; r < count; r++)
        if (!(e->id_objs[r] = PyLong_FromSsize_t(r))) return -1;
    return 0;
}

/* every id is a rank below n_ids (byte_rank and the slots hold nothing else) */
static PyObject *ids_to_list(const Encoder *e, const uint32_t *ids, size_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *id = e->id_objs[ids[i]];
        Py_INCREF(id);
        PyList_SET_ITEM(list, (Py_ssize_t)i, id);
    }
    return list;
}

static PyObject *Encoder_encode(Encoder *e, PyObject *text) {
    if (!PyUnicode_Check(text)) { PyErr_SetString(PyExc_TypeError, "encode() takes a str"); return NULL; }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);  /* lone surrogates: UnicodeEncodeError (a ValueError) */
    if (!s) return NULL;
    Ids out = {NULL, 0, 0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = encode_utf8(e, (const uint8_t *)s, (size_t)n, &out);
    Py_END_ALLOW_THREADS
    if (status) { free(out.ids); return PyErr_NoMemory(); }
    PyObject *list = ids_to_list(e, out.ids, out.n);
    free(out.ids);
    return list;
}

/* ---- many texts on threads ---- */
typedef struct {
    const uint8_t *s;  /* UTF-8, owned by the str (NULL: none, the result is None) */
    size_t n;
    size_t start, count;  /* its ids: workers[owner].out.ids[start : start + count] */
    uint32_t owner;
} Doc;

typedef struct {
    const Encoder *e;
    Doc *docs;
    size_t n_docs;
    atomic_size_t next;  /* the next document to take */
    atomic_int failed;   /* out of memory somewhere: everyone stops */
} Batch;

typedef struct {
    Batch *batch;
    Ids out;
    uint32_t index;
} Worker;

static void *batch_worker(void *arg) {
    Worker *w = arg;
    Batch *b = w->batch;
    while (!atomic_load_explicit(&b->failed, memory_order_relaxed)) {
        size_t d = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
        if (d >= b->n_docs) break;
        Doc *doc = &b->docs[d];
        if (!doc->s) continue;
        size_t before = w->out.n;
        if (encode_utf8(b->e, doc->s, doc->n, &w->out)) { atomic_store(&b->failed, 1); break; }
        doc->owner = w->index; doc->start = before; doc->count = w->out.n - before;
    }
    return NULL;
}

/* encode_batch(texts: Sequence[str], n_threads: int) -> list[list[int] | None] */
static PyObject *Encoder_encode_batch(Encoder *e, PyObject *args) {
    PyObject *arg, *texts, *result = NULL;
    int n_threads;
    if (!PyArg_ParseTuple(args, "Oi", &arg, &n_threads)) return NULL;
    if (n_threads < 1) { PyErr_SetString(PyExc_ValueError, "n_threads must be >= 1"); return NULL; }
    if (!(texts = PySequence_Tuple(arg))) return NULL;  /* our own references: the strs outlive the work */
    size_t n_docs = (size_t)PyTuple_GET_SIZE(texts);
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if ((size_t)n_threads > n_docs) n_threads = n_docs ? (int)n_docs : 1;
    Doc *docs = calloc(n_docs ? n_docs : 1, sizeof(Doc));
    Worker *workers = calloc(n_threads, sizeof(Worker));
    pthread_t *threads = calloc(n_threads, sizeof(pthread_t));
    if (!docs || !workers || !threads) { PyErr_NoMemory(); goto done; }
    for (size_t d = 0; d < n_docs; d++) {
        PyObject *text = PyTuple_GET_ITEM(texts, d);
        if (!PyUnicode_Check(text)) { PyErr_Format(PyExc_TypeError, "encode_batch() takes str, not %.100s", Py_TYPE(text)->tp_name); goto done; }
        Py_ssize_t n = 0;
        const char *s = PyUnicode_AsUTF8AndSize(text, &n);
        if (!s) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) goto done;
            PyErr_Clear();  /* a lone surrogate: None here, the caller's fallback names it */
        }
        docs[d].s = (const uint8_t *)s; docs[d].n = (size_t)n;
    }
    Batch batch = {.e = e, .docs = docs, .n_docs = n_docs};
    atomic_init(&batch.next, 0);
    atomic_init(&batch.failed, 0);
    int started = 1;  /* workers[0] is this thread; a thread that cannot start leaves its share to the rest */
    Py_BEGIN_ALLOW_THREADS
    for (int k = 0; k < n_threads; k++) workers[k] = (Worker){.batch = &batch, .index = (uint32_t)k};
    while (started < n_threads && pthread_create(&threads[started], NULL, batch_worker, &workers[started]) == 0) started++;
    batch_worker(&workers[0]);
    for (int k = 1; k < started; k++) pthread_join(threads[k], NULL);
    Py_END_ALLOW_THREADS
    if (atomic_load(&batch.failed)) { PyErr_NoMemory(); goto done; }
    result = PyList_New((Py_ssize_t)n_docs);
    for (size_t d = 0; result && d < n_docs; d++) {
        const Doc *doc = &docs[d];
        PyObject *ids = Py_None;
        if (doc->s) ids = ids_to_list(e, doc->count ? workers[doc->owner].out.ids + doc->start : NULL, doc->count);
        else Py_INCREF(Py_None);
        if (!ids) Py_CLEAR(result);
        else PyList_SET_ITEM(result, (Py_ssize_t)d, ids);
    }
done:
    for (int k = 0; workers && k < n_threads; k++) free(workers[k].out.ids);
    free(docs); free(workers); free(threads);
    Py_DECREF(texts);
    return result;
}

/* chunk boundaries only (for tests: the split equals the `regex` split) */
static PyObject *Encoder_split(Encoder *e, PyObject *text) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (!s) return NULL;
    PyObject *chunks = PyList_New(0);
    for (size_t i = 0; chunks && i < (size_t)n;) {
        size_t end = e->gpt4 ? next_chunk_gpt4(e, (const uint8_t *)s, i, n) : next_chunk_gpt2(e, (const uint8_t *)s, i, n);
        PyObject *chunk = PyUnicode_DecodeUTF8(s + i, end - i, "strict");
        if (!chunk || PyList_Append(chunks, chunk)) Py_CLEAR(chunks);
        Py_XDECREF(chunk);
        i = end;
    }
    return chunks;
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_O, "encode(text) -> list[int]: split, merge, ids (no special tokens)."},
    {"encode_batch", (PyCFunction)Encoder_encode_batch, METH_VARARGS,
     "encode_batch(texts, n_threads) -> list[list[int] | None]: encode on n_threads threads; None for text with no UTF-8."},
    {"split", (PyCFunction)Encoder_split, METH_O, "split(text) -> list[str]: the chunks."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fmblocks.tokenizers._bpe_fast.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder(tokens, split, classes, fold): byte-level BPE encoding in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bpe_fast", "Byte-level BPE encoding in C.", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bpe_fast(void) {
    if (PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) { Py_DECREF(&EncoderType); Py_DECREF(m); return NULL; }
    PyModule_AddIntConstant(m, "HEAP_FROM", HEAP_FROM);
    return m;
}
