/*
 * koe5's fp32 CPU attention for the unpadded encoder (see koe5/attention.py, which says why by hand).
 *
 * One call computes a whole layer's attention: softmax(Q K^T) V for every input, every head, with no
 * mask (every input of a run has the same length, so no token is padding), reading Q, K and V straight
 * from the fused QKV product and writing the context rows the output projection reads. 1/sqrt(d) is
 * already folded into Q.
 *
 * For each (input, head) a thread transposes K (16 x 16 blocks in registers) and copies V into small
 * contiguous buffers (L2-resident), then for 8 query rows at a time computes their whole score rows
 * with each row's maximum (at most max length x 8 floats, in L1), exponentiates them once in base 2
 * (log2 e is applied to Q as its rows are copied; rows are whole, so no running rescale is needed as
 * in flash attention), and accumulates P V with the output rows held in registers. An (input, head)
 * is split into blocks of query rows only when there are too few of them for the threads. Head sizes
 * 32, 64 and 128 (E5 small / base / large: 32, 64, 64); anything else returns -1 and koe5 uses
 * PyTorch's kernel. Two versions of the per-item code: AVX-512 (16-float vectors, 32 registers) and
 * AVX2 + FMA (8-float vectors, 16 registers: 4 query rows per score block, 2 per P V block); the
 * caller picks the one its CPU runs.
 *
 * Plain C with no Python API: koe5 loads it with ctypes (which releases the GIL) after PyTorch, so
 * its OpenMP threads are PyTorch's own (one libgomp.so.1 in the process).
 */
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <omp.h>

#define ROWS 8 /* query rows per score block */

/* ---- AVX-512: 16 floats a vector, 32 registers ------------------------------------------------ */
#pragma GCC push_options
#pragma GCC target("avx512f")

/* 2^x for x <= 0 (scores in base 2 minus their row maximum): x = n + r with |r| <= 1/2, 2^r by its
 * Taylor polynomial of degree 6 (relative error below 1.2e-7, about one unit in the last place), times
 * 2^n by scalef, which goes to 0 for very negative x instead of overflowing. */
static inline __m512 exp2_nonpositive(__m512 x) {
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.5403530393381608e-4f); /* (ln 2)^k / k!, k = 6 .. 0 */
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Keys j .. j + 15 that are real (not the zero padding up to lp). */
static inline __mmask16 real_keys(int64_t j, int64_t length) {
    int64_t left = length - j;
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* S[r][j] = q_r . k_j for ROWS query rows (q: ROWS x d, zero rows past the input's end) against all
 * keys (kt: d x lp, K transposed, zero columns past length); mx[r] = the row's maximum over real keys.
 * Two vectors of 16 keys per step: 16 accumulators, 2 loads of K and 8 broadcasts of q per 16 FMAs.
 * The running maxima live in memory (m: ROWS x 16 floats): in registers they would push K's two
 * vectors out of the 32 the loop needs. */
static inline void scores(const float *q, const float *kt, float *s, float *m, float *mx, int64_t d,
                          int64_t length, int64_t lp) {
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(m + 16 * r, _mm512_set1_ps(-__builtin_inff()));
    int64_t j = 0;
    for (; j + 32 <= lp; j += 32) {
        __m512 a0[ROWS], a1[ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) a0[r] = a1[r] = _mm512_setzero_ps();
        for (int64_t c = 0; c < d; c++) {
            __m512 k0 = _mm512_loadu_ps(kt + c * lp + j), k1 = _mm512_loadu_ps(kt + c * lp + j + 16);
#pragma GCC unroll 8
            for (int r = 0; r < ROWS; r++) {
                __m512 b = _mm512_set1_ps(q[r * d + c]);
                a0[r] = _mm512_fmadd_ps(b, k0, a0[r]);
                a1[r] = _mm512_fmadd_ps(b, k1, a1[r]);
            }
        }
        __mmask16 real0 = real_keys(j, length), real1 = real_keys(j + 16, length);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) {
            _mm512_storeu_ps(s + r * lp + j, a0[r]);
            _mm512_storeu_ps(s + r * lp + j + 16, a1[r]);
            __m512 mr = _mm512_loadu_ps(m + 16 * r);
            mr = _mm512_mask_max_ps(mr, real0, mr, a0[r]);
            _mm512_storeu_ps(m + 16 * r, _mm512_mask_max_ps(mr, real1, mr, a1[r]));
        }
    }
    if (j < lp) { /* lp is a multiple of 16: one vector of keys left */
        __m512 a0[ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) a0[r] = _mm512_setzero_ps();
        for (int64_t c = 0; c < d; c++) {
            __m512 k0 = _mm512_loadu_ps(kt + c * lp + j);
#pragma GCC unroll 8
            for (int r = 0; r < ROWS; r++) a0[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r * d + c]), k0, a0[r]);
        }
        __mmask16 real0 = real_keys(j, length);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) {
            _mm512_storeu_ps(s + r * lp + j, a0[r]);
            __m512 mr = _mm512_loadu_ps(m + 16 * r);
            _mm512_storeu_ps(m + 16 * r, _mm512_mask_max_ps(mr, real0, mr, a0[r]));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r++) mx[r] = _mm512_reduce_max_ps(_mm512_loadu_ps(m + 16 * r));
}

/* Row r of S becomes 2^(S - max) over its real keys and zero past them; returns the row's sum. */
static inline float softmax_numerators(float *s, float max, int64_t length, int64_t lp) {
    __m512 mx = _mm512_set1_ps(max), sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < lp; j += 16) {
        __m512 e = _mm512_maskz_mov_ps(real_keys(j, length),
                                       exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + j), mx)));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* out_r = (sum_j P[r][j] v_j) / total_r for R rows, head size DV x 16, R x DV = 16 accumulators. */
#define DEFINE_PV(NAME, R, DV)                                                                          \
    static inline void NAME(const float *p, const float *v, const float *total, float *out,            \
                            int64_t out_stride, int rows, int64_t length, int64_t lp) {                 \
        __m512 acc[R][DV];                                                                              \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                            \
            _Pragma("GCC unroll 8") for (int c = 0; c < DV; c++) acc[r][c] = _mm512_setzero_ps();      \
        for (int64_t j = 0; j < length; j++) {                                                          \
            __m512 vv[DV];                                                                              \
            _Pragma("GCC unroll 8") for (int c = 0; c < DV; c++) vv[c] = _mm512_loadu_ps(v + j * DV * 16 + c * 16); \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                      \
                __m512 b = _mm512_set1_ps(p[r * lp + j]);                                               \
                _Pragma("GCC unroll 8") for (int c = 0; c < DV; c++) acc[r][c] = _mm512_fmadd_ps(b, vv[c], acc[r][c]); \
            }                                                                                           \
        }                                                                                               \
        for (int r = 0; r < R && r < rows; r++) {                                                       \
            __m512 inv = _mm512_set1_ps(1.0f / total[r]);                                               \
            _Pragma("GCC unroll 8") for (int c = 0; c < DV; c++)                                        \
                _mm512_storeu_ps(out + r * out_stride + c * 16, _mm512_mul_ps(acc[r][c], inv));         \
        }                                                                                               \
    }

DEFINE_PV(pv32, 8, 2)
DEFINE_PV(pv64, 4, 4)
DEFINE_PV(pv128, 2, 8)

/* dst[c * dst_stride + t] = src[t * src_stride + c] for a 16 x 16 block, rows t >= rows taken as zero:
 * three rounds of in-register shuffles (pairs of floats, pairs of pairs, then 128-bit quarters). */
static inline void transpose16(const float *src, int64_t src_stride, int64_t rows, float *dst, int64_t dst_stride) {
    __m512 r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(src + i * src_stride) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);     /* per quarter: a0 b0 a1 b1 */
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]); /*              a2 b2 a3 b3 */
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* per quarter l, r[4i + k] = column 4l + k of rows 4i .. 4i + 3 */
        __m512d x = _mm512_castps_pd(t[4 * i]), y = _mm512_castps_pd(t[4 * i + 1]);
        __m512d z = _mm512_castps_pd(t[4 * i + 2]), w = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, z));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, z));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(y, w));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(y, w));
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* gather quarter l of r[k], r[4 + k], r[8 + k], r[12 + k] */
        __m512 v0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), v1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE);
        __m512 w0 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44), w1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
        _mm512_storeu_ps(dst + (0 + k) * dst_stride, _mm512_shuffle_f32x4(v0, w0, 0x88));
        _mm512_storeu_ps(dst + (4 + k) * dst_stride, _mm512_shuffle_f32x4(v0, w0, 0xDD));
        _mm512_storeu_ps(dst + (8 + k) * dst_stride, _mm512_shuffle_f32x4(v1, w1, 0x88));
        _mm512_storeu_ps(dst + (12 + k) * dst_stride, _mm512_shuffle_f32x4(v1, w1, 0xDD));
    }
}

/* One work item: query rows [first, first + count) of one head of one input. */
/* P V for `rows` rows of S on AVX-512, in blocks of as many rows as 16 accumulators hold. */
static void pv512(const float *s, const float *v, const float *total, float *o, int64_t out_stride, int rows,
                  int64_t d, int64_t length, int64_t lp) {
    int step = d == 32 ? 8 : d == 64 ? 4 : 2;
    for (int r0 = 0; r0 < rows; r0 += step) {
        const float *p = s + r0 * lp;
        float *out = o + r0 * out_stride;
        if (d == 32) pv32(p, v, total + r0, out, out_stride, rows - r0, length, lp);
        else if (d == 64) pv64(p, v, total + r0, out, out_stride, rows - r0, length, lp);
        else pv128(p, v, total + r0, out, out_stride, rows - r0, length, lp);
    }
}
#pragma GCC pop_options

/* ---- AVX2 + FMA: 8 floats a vector, 16 registers ---------------------------------------------- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* 2^x for x <= 0 as exp2_nonpositive, with 2^n built in the exponent bits (AVX2 has no scalef):
 * x is first raised to -125, where 2^x (~2e-38, still a normal float) is 0 next to the row
 * maximum's 1. x goes second to max, which returns its second operand when either is NaN: a NaN
 * score (a NaN or infinite q or k) stays NaN, as in exp2_nonpositive and PyTorch, instead of
 * becoming 2^-125 and hiding in a finite output. */
static inline __m256 exp2_nonpositive8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-125.0f), x);
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.5403530393381608e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3333558146428443e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(9.6181291076284772e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.5504108664821580e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(2.4022650695910071e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(6.9314718055994531e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* All-ones lanes for keys j .. j + 7 that are real (not the zero padding up to lp). */
static inline __m256 real_keys8(int64_t j, int64_t length) {
    int64_t left = length - j;
    int32_t n = left >= 8 ? 8 : left <= 0 ? 0 : (int32_t)left;
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

static inline float reduce_max8(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

static inline float reduce_add8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

/* scores() for 16 registers: 4 query rows at a time against 16 keys (8 accumulators, 2 loads of K,
 * 4 broadcasts of q per 8 FMAs); running maxima in m (8 floats a row). lp is a multiple of 16. */
static inline void scores8(const float *q, const float *kt, float *s, float *m, float *mx, int64_t d,
                           int64_t length, int64_t lp) {
    for (int g = 0; g < ROWS; g += 4) {
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) _mm256_storeu_ps(m + 8 * (g + r), _mm256_set1_ps(-__builtin_inff()));
        for (int64_t j = 0; j < lp; j += 16) {
            __m256 a0[4], a1[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) a0[r] = a1[r] = _mm256_setzero_ps();
            for (int64_t c = 0; c < d; c++) {
                __m256 k0 = _mm256_loadu_ps(kt + c * lp + j), k1 = _mm256_loadu_ps(kt + c * lp + j + 8);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m256 b = _mm256_broadcast_ss(q + (g + r) * d + c);
                    a0[r] = _mm256_fmadd_ps(b, k0, a0[r]);
                    a1[r] = _mm256_fmadd_ps(b, k1, a1[r]);
                }
            }
            __m256 real0 = real_keys8(j, length), real1 = real_keys8(j + 8, length);
            __m256 none = _mm256_set1_ps(-__builtin_inff());
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                _mm256_storeu_ps(s + (g + r) * lp + j, a0[r]);
                _mm256_storeu_ps(s + (g + r) * lp + j + 8, a1[r]);
                __m256 mr = _mm256_max_ps(_mm256_loadu_ps(m + 8 * (g + r)), _mm256_blendv_ps(none, a0[r], real0));
                _mm256_storeu_ps(m + 8 * (g + r), _mm256_max_ps(mr, _mm256_blendv_ps(none, a1[r], real1)));
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) mx[g + r] = reduce_max8(_mm256_loadu_ps(m + 8 * (g + r)));
    }
}

static inline float softmax_numerators8(float *s, float max, int64_t length, int64_t lp) {
    __m256 mx = _mm256_set1_ps(max), sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < lp; j += 8) {
        __m256 e = _mm256_and_ps(real_keys8(j, length), exp2_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mx)));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    return reduce_add8(sum);
}

/* out_r[0..32) = (sum_j P[r][j] v_j[0..32)) / total_r for 2 rows (8 accumulators) of one 32-column slab
 * of V (v rows d floats apart). */
static inline void pv8(const float *p, const float *v, int64_t d, const float *total, float *out,
                       int64_t out_stride, int rows, int64_t length, int64_t lp) {
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t j = 0; j < length; j++) {
        __m256 vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) vv[c] = _mm256_loadu_ps(v + j * d + 8 * c);
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) {
            __m256 b = _mm256_broadcast_ss(p + r * lp + j);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[r][c] = _mm256_fmadd_ps(b, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < 2 && r < rows; r++) {
        __m256 inv = _mm256_set1_ps(1.0f / total[r]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(out + r * out_stride + 8 * c, _mm256_mul_ps(acc[r][c], inv));
    }
}

/* transpose16's 8 x 8 form: pairs of floats, pairs of pairs, then 128-bit halves. */
static inline void transpose8(const float *src, int64_t src_stride, int64_t rows, float *dst, int64_t dst_stride) {
    __m256 r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = i < rows ? _mm256_loadu_ps(src + i * src_stride) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);     /* per half: a0 b0 a1 b1 */
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]); /*           a2 b2 a3 b3 */
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) { /* per half l, u[4i + k] = column 4l + k of rows 4i .. 4i + 3 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_ps(dst + k * dst_stride, _mm256_permute2f128_ps(u[k], u[4 + k], 0x20));
        _mm256_storeu_ps(dst + (4 + k) * dst_stride, _mm256_permute2f128_ps(u[k], u[4 + k], 0x31));
    }
}

static void pv256(const float *s, const float *v, const float *total, float *o, int64_t out_stride, int rows,
                  int64_t d, int64_t length, int64_t lp) {
    for (int r0 = 0; r0 < rows; r0 += 2)
        for (int64_t c = 0; c < d; c += 32)
            pv8(s + r0 * lp, v + c, d, total + r0, o + r0 * out_stride + c, out_stride, rows - r0, length, lp);
}
#pragma GCC pop_options

/* ---- one work item, on either instruction set ------------------------------------------------- */
struct isa {
    int width; /* floats a vector: the transpose's block */
    void (*transpose)(const float *src, int64_t src_stride, int64_t rows, float *dst, int64_t dst_stride);
    void (*scores)(const float *q, const float *kt, float *s, float *m, float *mx, int64_t d, int64_t length,
                   int64_t lp);
    float (*softmax)(float *s, float max, int64_t length, int64_t lp);
    void (*pv)(const float *s, const float *v, const float *total, float *o, int64_t out_stride, int rows,
               int64_t d, int64_t length, int64_t lp);
};
static const struct isa AVX512 = {16, transpose16, scores, softmax_numerators, pv512};
static const struct isa AVX2 = {8, transpose8, scores8, softmax_numerators8, pv256};

/* Query rows [first, first + count) of one head of one input. Buffers: kt d x lp, v length x d,
 * s ROWS x lp, q ROWS x d followed by ROWS x 16 floats of running maxima. */
static void attend(const struct isa *isa, const float *qkv, float *out, int64_t length, int64_t heads, int64_t d,
                   int64_t qkv_stride, int64_t out_stride, int64_t head, int64_t first, int64_t count, float *kt,
                   float *v, float *s, float *q) {
    int64_t lp = (length + 15) & ~(int64_t)15, hd = heads * d;
    const float *qh = qkv + head * d, *kh = qkv + hd + head * d, *vh = qkv + 2 * hd + head * d;
    for (int64_t j = 0; j < lp; j += isa->width) /* K transposed, zero past length */
        for (int64_t c = 0; c < d; c += isa->width)
            isa->transpose(kh + j * qkv_stride + c, qkv_stride, length - j, kt + c * lp + j, lp);
    for (int64_t j = 0; j < length; j++)
        for (int64_t c = 0; c < d; c++) v[j * d + c] = vh[j * qkv_stride + c];
    float total[ROWS], mx[ROWS];
    for (int64_t i = first; i < first + count; i += ROWS) {
        int rows = (int)(first + count - i < ROWS ? first + count - i : ROWS);
        /* scores in base 2: exp(x) = 2^(x log2 e), the factor applied to q as it is copied */
        for (int r = 0; r < ROWS; r++)
            for (int64_t c = 0; c < d; c++)
                q[r * d + c] = r < rows ? qh[(i + r) * qkv_stride + c] * 1.44269504088896341f : 0.0f;
        isa->scores(q, kt, s, q + ROWS * d, mx, d, length, lp);
        for (int r = 0; r < rows; r++) total[r] = isa->softmax(s + r * lp, mx[r], length, lp);
        isa->pv(s, v, total, out + i * out_stride + head * d, out_stride, rows, d, length, lp);
    }
}

/*
 * runs: n_runs triples (first token, inputs, length), inputs of a run stored one after another.
 * qkv: (tokens, 3 * heads * d) rows qkv_stride floats apart; out: (tokens, heads * d) rows out_stride
 * apart. avx512: 1 for the AVX-512 code, 0 for AVX2 + FMA (the caller checks the CPU has it).
 * Returns 0, or -1 for an unsupported head size / failed allocation (out is then undefined).
 */
int koe5_attention(const float *qkv, float *out, const int64_t *runs, int64_t n_runs, int64_t heads,
                   int64_t d, int64_t qkv_stride, int64_t out_stride, int threads, int avx512) {
    if ((d != 32 && d != 64 && d != 128) || heads < 0 || n_runs < 0) return -1;
    if (threads < 1) threads = 1; /* num_threads must be positive */
    /* Work items: one (input, head) each, its K and V copied once; split into blocks of query rows
     * only when there are too few of them to keep every thread busy. */
    int64_t pairs = 0, max_length = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        /* bounded so that no size below overflows int64 (a wrapped buffer size means wild writes) */
        if (runs[3 * k + 1] <= 0 || runs[3 * k + 2] <= 0 || runs[3 * k + 1] > INT32_MAX ||
            runs[3 * k + 2] > INT32_MAX || heads > INT32_MAX)
            return -1;
        pairs += runs[3 * k + 1] * heads;
        if (runs[3 * k + 2] > max_length) max_length = runs[3 * k + 2];
    }
    if (pairs == 0) return 0;
    int64_t splits = pairs >= 4 * (int64_t)threads ? 1 : (4 * (int64_t)threads + pairs - 1) / pairs;
    int64_t items = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        int64_t length = runs[3 * k + 2], chunk = (length + splits - 1) / splits;
        chunk = (chunk + ROWS - 1) / ROWS * ROWS;
        items += runs[3 * k + 1] * heads * ((length + chunk - 1) / chunk);
    }
    int64_t *item = malloc((size_t)(items > 0 ? items : 1) * 5 * sizeof(int64_t));
    if (!item) return -1;
    int64_t t = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        int64_t first = runs[3 * k], inputs = runs[3 * k + 1], length = runs[3 * k + 2];
        int64_t chunk = ((length + splits - 1) / splits + ROWS - 1) / ROWS * ROWS;
        for (int64_t n = 0; n < inputs; n++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t c = 0; c < length; c += chunk) {
                    int64_t *it = item + 5 * t++;
                    it[0] = first + n * length; /* the input's first token */
                    it[1] = length;
                    it[2] = h;
                    it[3] = c; /* its block of query rows */
                    it[4] = length - c < chunk ? length - c : chunk;
                }
    }
    int64_t lp = (max_length + 15) & ~(int64_t)15;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        size_t bytes = ((size_t)(2 * d * lp + ROWS * lp + ROWS * d + ROWS * 16) * sizeof(float) + 63) & ~(size_t)63;
        float *buffer = aligned_alloc(64, bytes);
        if (!buffer) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < items; k++) {
            if (!buffer) continue;
            const int64_t *it = item + 5 * k;
            int64_t start = it[0], length = it[1], h = it[2], c = it[3], count = it[4];
            attend(avx512 ? &AVX512 : &AVX2, qkv + start * qkv_stride, out + start * out_stride, length, heads, d, qkv_stride,
                   out_stride, h, c, count, buffer, buffer + d * lp, buffer + 2 * d * lp,
                   buffer + 2 * d * lp + ROWS * lp);
        }
        free(buffer);
    }
    free(item);
    return failed ? -1 : 0;
}

#else
int koe5_attention(const float *qkv, float *out, const int64_t *runs, int64_t n_runs, int64_t heads,
                   int64_t d, int64_t qkv_stride, int64_t out_stride, int threads, int avx512) {
    (void)qkv; (void)out; (void)runs; (void)n_runs; (void)heads; (void)d; (void)qkv_stride;
    (void)out_stride; (void)threads; (void)avx512;
    return -1;
}
#endif
