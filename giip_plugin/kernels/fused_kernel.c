/* Compiled rotation search (see fused.py for the method and the host side).
 *
 * One call maps a range of atoms (side A), each against its own list of references (side B, CSR:
 * cols[rowptr[i] .. rowptr[i+1]) ): for each atom, the band-limited grid in single precision over
 * blocks of B references side by side (SIMD lanes), the best K local maxima of each parity among
 * the pool largest grid values, then the Newton polish of those starts on the exact sum of Gaussians
 * in double precision, B starts at a time (a lane whose start is finished takes the next one). With
 * tol > 0 a start runs to convergence (step below tol) or until it provably cannot beat the best
 * value of its pair; with tol <= 0 it runs max_iter steps (the coarse search). The grid works on
 * vectors of B lanes (GCC/Clang vector extension); the polish's loops over lanes have the
 * compile-time trip count B on restrict-qualified scratch arrays, which the compiler vectorises as
 * well (built with -O3 -march=native -ffast-math). A call holds no Python state, so several threads
 * run calls on disjoint atom ranges at once.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define B 16
#define TRUST 0.3

typedef int64_t i64;

/* exp(x) for x <= 0 without a library call, so that loops over lanes vectorise: x = n ln2 + r with
 * |r| <= ln2 / 2 (ln2 in two parts), a degree-12 Taylor polynomial of exp(r), times 2^n built in
 * the exponent bits (relative error below 1e-14 on [-700, 0]; clamped below). */
static inline double exp_poly(double r) { /* exp(r) for |r| <= ln2 / 2: degree-12 Taylor polynomial */
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

static inline double exp_neg(double x) {
    x = x < -700.0 ? -700.0 : x;
    const double n = __builtin_round(x * 1.4426950408889634);
    const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
    const double p = exp_poly(r);
    union { double d; int64_t i; } u;
    u.i = ((int64_t)n + 1023) << 52;
    return p * u.d;
}

double giip_exp_neg(double x) { return exp_neg(x); }

/* The identity of this build (build_info.py: source and CPU), given by the build as -DGIIP_IDENTITY */
#ifndef GIIP_IDENTITY
#define GIIP_IDENTITY "unknown"
#endif
const char *giip_identity(void) { return GIIP_IDENTITY; }

typedef struct {
    /* side A */
    i64 qa, C, Kc;
    const double *pa, *wa, *self_a;
    const i64 *cnt_a;
    const float *ca_r, *ca_i;
    /* side B; coefficients (environments, Kc) */
    i64 qb;
    const double *pb, *wb, *self_b;
    const i64 *cnt_b;
    const float *cb_r, *cb_i;
    /* grid */
    double kap;
    i64 L, D, n_beta, N;
    const i64 *g_offa, *g_offb, *g_w, *g_k, *g_t;
    const float *dval, *cw, *sw, *cal, *sal;
    const double *rgrid;
    i64 parities, max_iter;
    /* search: K starts per parity from the pool largest grid values; convergence tolerance (rad);
     * window > 0: starts whose grid value is below the pair's best one by more than window
     * (self_a + self_b) / 2 are not polished */
    i64 K, pool;
    double tol, window;
} Args;

/* B single-precision lanes as one vector (GCC/Clang vector extension: one AVX-512 register, two
 * AVX ones); unaligned loads and stores through these pointer types. */
typedef float vf __attribute__((vector_size(4 * B), aligned(4)));
typedef int32_t vi __attribute__((vector_size(4 * B), aligned(4)));
#define LD(p) (*(const vf *)(p))
#define ST(p, x) (*(vf *)(p) = (x))

static inline vf select_vf(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* Fourier sums of one parity of the index m (m = m0, m0 + 2, ... < L1) with the cosine and sine
 * tables c / s (entry m N + col): a += c_m p0[m], b += w_m p1[m], c += v_m p2[m], d += sg s_m p3[m]
 * (p_k[m] at p_k + m st), where w = s and v = c when second_sin, else w = c and v = s. Four named
 * sums returned by value (arrays of sums went through the stack, and their half-width initial
 * stores stalled the full-width loads). */
typedef struct { vf a, b, c, d; } vf4;
static inline __attribute__((always_inline)) vf4 parity_sums(const float *restrict cw, const float *restrict sw, i64 N,
                                                             i64 col, i64 m0, i64 L1, const float *p0, const float *p1,
                                                             const float *p2, const float *p3, i64 st, int second_sin,
                                                             float sg) {
    const vf zero = {0};
    vf4 r = {zero, zero, zero, zero};
    for (i64 m = m0; m < L1; m += 2) {
        const float c = cw[m * N + col], s = sw[m * N + col];
        r.a += c * LD(p0 + m * st);
        r.b += (second_sin ? s : c) * LD(p1 + m * st);
        r.c += (second_sin ? c : s) * LD(p2 + m * st);
        r.d += (sg * s) * LD(p3 + m * st);
    }
    return r;
}

/* Best grid value and flat index per lane and parity (best_v, best_i: [2][B]) of B pairs, from
 * their harmonic coefficients side by side (ca, cb: [Kc][B]); with Fbuf, every grid value too and
 * the maxima of its rows of N values (gmax: [2][n_beta N][B], the rows of select_starts). */
static inline __attribute__((always_inline)) void
grid_block_impl(const Args *A, const float *restrict ca_r, const float *restrict ca_i, const float *restrict cb_r, const float *restrict cb_i, float *restrict Fbuf, float *restrict G_r, float *restrict G_i, float *restrict H_r,
                float *restrict H_i, float *restrict U_r, float *restrict U_i, float *restrict Pr,
                float *restrict Pi, float *restrict Qr, float *restrict Qi, float *restrict best_v,
                float *restrict best_i, float *restrict gmax, const i64 *restrict t_start, const i64 L, const i64 N,
                const i64 n_beta) {
    const i64 M = 2 * L + 1, L1 = L + 1, D = A->D;
    const vf zero = {0};
    /* coupling G = C_A^T conj(C_B), entry by entry (l, m, m' >= 0) */
    for (i64 d = 0; d < D; d++) {
        vf gr = zero, gi = zero;
        const i64 oa = A->g_offa[d], ob = A->g_offb[d], w = A->g_w[d];
        for (i64 n = 0; n < A->g_k[d]; n++) {
            const vf xr = LD(ca_r + (oa + n * w) * B), xi = LD(ca_i + (oa + n * w) * B);
            const vf yr = LD(cb_r + (ob + n * w) * B), yi = LD(cb_i + (ob + n * w) * B);
            gr += xr * yr + xi * yi;
            gi += xi * yr - xr * yi;
        }
        ST(G_r + d * B, gr);
        ST(G_i + d * B, gi);
    }
    vf bv0 = zero - 1e30f, bv1 = zero - 1e30f, bi0 = zero, bi1 = zero;
    const i64 nH = 2 * M * L1;
    for (i64 bb = 0; bb < n_beta; bb++) {
        /* H = sum_l d^l(beta) G^l: the coupling entries come sorted by their row t of H */
        const float *dv = A->dval + bb * D;
        for (i64 t = 0; t < nH; t++) {
            vf hr = zero, hi = zero;
            for (i64 d = t_start[t]; d < t_start[t + 1]; d++) {
                hr += dv[d] * LD(G_r + d * B);
                hi += dv[d] * LD(G_i + d * B);
            }
            ST(H_r + t * B, hr);
            ST(H_i + t * B, hi);
        }
        /* U_m(gamma), m >= 0, both parities: Fourier sum over m' >= 0 of P cos + Q sin, with
         * P = H[m] + conj H[-m] and Q = H[m] - conj H[-m] (for m = 0: P = Q = H[0]) */
        for (i64 par = 0; par < 2; par++) {
            for (i64 m = 0; m < L1; m++) {
                const float *hp_r = H_r + (par * M + L + m) * L1 * B, *hp_i = H_i + (par * M + L + m) * L1 * B;
                const float *hn_r = H_r + (par * M + L - m) * L1 * B, *hn_i = H_i + (par * M + L - m) * L1 * B;
                for (i64 mp = 0; mp < L1; mp++) {
                    const vf ar = LD(hp_r + mp * B), ai = LD(hp_i + mp * B);
                    const vf br = m ? LD(hn_r + mp * B) : zero, bi = m ? LD(hn_i + mp * B) : zero;
                    ST(Pr + mp * B, ar + br);
                    ST(Pi + mp * B, ai - bi);
                    ST(Qr + mp * B, ar - br);
                    ST(Qi + mp * B, ai + bi);
                }
                /* gamma_g, gamma_g + pi, -gamma_g and pi - gamma_g share the products: sums over
                 * even (0) and odd (1) m' of the cosine (c) and sine (s) terms */
                for (i64 g = 0; g <= N / 4; g++) {
                    const vf4 e = parity_sums(A->cw, A->sw, N, g, 0, L1, Pr, Pi, Qi, Qr, B, 0, -1.0f);
                    const vf4 d = parity_sums(A->cw, A->sw, N, g, 1, L1, Pr, Pi, Qi, Qr, B, 0, -1.0f);
                    const vf c0r = e.a, c0i = e.b, s0r = e.c, s0i = e.d, c1r = d.a, c1i = d.b, s1r = d.c, s1i = d.d;
                    float *o = U_r + (par * L1 + m) * N * B, *oi = U_i + (par * L1 + m) * N * B;
                    ST(o + g * B, c0r + c1r + s0r + s1r);
                    ST(oi + g * B, c0i + c1i + s0i + s1i);
                    ST(o + (g + N / 2) * B, c0r - c1r + s0r - s1r);
                    ST(oi + (g + N / 2) * B, c0i - c1i + s0i - s1i);
                    ST(o + ((N - g) % N) * B, c0r + c1r - s0r - s1r);
                    ST(oi + ((N - g) % N) * B, c0i + c1i - s0i - s1i);
                    ST(o + (N / 2 - g) * B, c0r - c1r - s0r + s1r);
                    ST(oi + (N / 2 - g) * B, c0i - c1i - s0i + s1i);
                }
            }
        }
        /* F(alpha, gamma): Fourier sum over m of U_m, for even (e) and odd (o) l; alpha_a,
         * alpha_a + pi, -alpha_a and pi - alpha_a share the products as above */
        for (i64 g = 0; g < N; g++) {
            for (i64 a = 0; a <= N / 4; a++) {
                const float *ur = U_r + g * B, *ui = U_i + g * B, *ur2 = U_r + (L1 * N + g) * B, *ui2 = U_i + (L1 * N + g) * B;
                const vf4 e = parity_sums(A->cal, A->sal, N, a, 0, L1, ur, ui, ur2, ui2, N * B, 1, 1.0f);
                const vf4 d = parity_sums(A->cal, A->sal, N, a, 1, L1, ur, ui, ur2, ui2, N * B, 1, 1.0f);
                const vf ce0 = e.a, se0 = e.b, co0 = e.c, so0 = e.d, ce1 = d.a, se1 = d.b, co1 = d.c, so1 = d.d;
                const i64 as[4] = {a, a + N / 2, (N - a) % N, N / 2 - a};
                const vf fe[4] = {ce0 + ce1 + se0 + se1, ce0 - ce1 + se0 - se1, ce0 + ce1 - se0 - se1, ce0 - ce1 - se0 + se1};
                const vf fo[4] = {co0 + co1 + so0 + so1, co0 - co1 + so0 - so1, co0 + co1 - so0 - so1, co0 - co1 - so0 + so1};
                for (int v = 0; v < 4; v++) {
                    const vf idx = zero + (float)((bb * N + as[v]) * N + g);
                    const vf vp = fe[v] + fo[v], vm = fe[v] - fo[v];
                    if (Fbuf) { /* every value, and the maxima of its rows (fixed beta, alpha) */
                        const i64 nG = N * N * n_beta, r = bb * N + as[v], at = r * N + g;
                        ST(Fbuf + at * B, vp);
                        ST(Fbuf + (nG + at) * B, vm);
                        float *m0 = gmax + r * B, *m1 = gmax + (N * n_beta + r) * B;
                        if (g == 0) {
                            ST(m0, vp);
                            ST(m1, vm);
                        } else {
                            const vf o0 = LD(m0), o1 = LD(m1);
                            ST(m0, select_vf(vp > o0, vp, o0));
                            ST(m1, select_vf(vm > o1, vm, o1));
                        }
                    }
                    const vi up = vp > bv0, um = vm > bv1;
                    bi0 = select_vf(up, idx, bi0);
                    bv0 = select_vf(up, vp, bv0);
                    bi1 = select_vf(um, idx, bi1);
                    bv1 = select_vf(um, vm, bv1);
                }
            }
        }
    }
    ST(best_v, bv0);
    ST(best_v + B, bv1);
    ST(best_i, bi0);
    ST(best_i + B, bi1);
}

/* The grid of one block, specialised for the band limits 6 and 7 (constant loop bounds let the
 * compiler unroll the short Fourier sums), generic otherwise. */
static void grid_block(const Args *A, const float *ca_r, const float *ca_i, const float *cb_r, const float *cb_i, float *Fbuf, float *G_r, float *G_i, float *H_r, float *H_i,
                       float *U_r, float *U_i, float *Pr, float *Pi, float *Qr, float *Qi, float *best_v,
                       float *best_i, float *gmax, const i64 *t_start) {
    if (A->L == 6 && A->N == 14 && A->n_beta == 7)
        grid_block_impl(A, ca_r, ca_i, cb_r, cb_i, Fbuf, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, gmax, t_start, 6, 14, 7);
    else if (A->L == 7 && A->N == 16 && A->n_beta == 8)
        grid_block_impl(A, ca_r, ca_i, cb_r, cb_i, Fbuf, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, gmax, t_start, 7, 16, 8);
    else
        grid_block_impl(A, ca_r, ca_i, cb_r, cb_i, Fbuf, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, gmax, t_start, A->L,
                        A->N, A->n_beta);
}

/* Overlap f[B] of B pairs: neighbours aq (na x 3 x B) of A, rotated neighbours of B, bq (nq x 3 x
 * B) (padding: zero weights), weights W (qa x qs x B, p < na and q < nq used), or with bw, weights
 * that factorise (one channel): W[p B + k] bw[q B + k]; rotations R (9 x B,
 * row-major); with want, gradient and Hessian in gH (18 x B): rows 0-2 gradient, 3-8 Hessian (00
 * 01 02 11 12 22), 9-17 work space. */
static __attribute__((noinline)) void eval_lanes(const double *restrict aq, i64 na, const double *restrict bq,
                                                 i64 nq, i64 qs, const double *restrict W,
                                                 const double *restrict bw, double kap,
                                                 const double *restrict R, double *restrict cq, int want,
                                                 double *restrict f, double *restrict gH) {
    for (i64 q = 0; q < nq; q++) {
        const double *bx = bq + (q * 3 + 0) * B, *by = bq + (q * 3 + 1) * B, *bz = bq + (q * 3 + 2) * B;
        double *cx = cq + (q * 3 + 0) * B, *cy = cq + (q * 3 + 1) * B, *cz = cq + (q * 3 + 2) * B;
        for (int k = 0; k < B; k++) {
            cx[k] = R[0 * B + k] * bx[k] + R[1 * B + k] * by[k] + R[2 * B + k] * bz[k];
            cy[k] = R[3 * B + k] * bx[k] + R[4 * B + k] * by[k] + R[5 * B + k] * bz[k];
            cz[k] = R[6 * B + k] * bx[k] + R[7 * B + k] * by[k] + R[8 * B + k] * bz[k];
        }
    }
    for (int k = 0; k < B; k++) f[k] = 0.0;
    const double h = -0.5 * kap;
    const i64 sp = bw ? 1 : qs, sq = bw ? 0 : 1; /* W + (p sp + q sq) B: the weights of (p, q) */
    if (!want) {
        for (i64 q = 0; q < nq; q++) {
            const double *cx = cq + (q * 3 + 0) * B, *cy = cq + (q * 3 + 1) * B, *cz = cq + (q * 3 + 2) * B;
            double fq[B];
            for (int k = 0; k < B; k++) fq[k] = 0.0;
            for (i64 p = 0; p < na; p++) {
                const double *ax = aq + (p * 3 + 0) * B, *ay = aq + (p * 3 + 1) * B, *az = aq + (p * 3 + 2) * B;
                const double *w = W + (p * sp + q * sq) * B;
                for (int k = 0; k < B; k++) {
                    const double dx = ax[k] - cx[k], dy = ay[k] - cy[k], dz = az[k] - cz[k];
                    fq[k] += w[k] * exp_neg(h * (dx * dx + dy * dy + dz * dz));
                }
            }
            for (int k = 0; k < B; k++) f[k] += bw ? fq[k] * bw[q * B + k] : fq[k];
        }
        return;
    }
    for (int t = 0; t < 18 * B; t++) gH[t] = 0.0;
    for (i64 q = 0; q < nq; q++) {
        const double *cx = cq + (q * 3 + 0) * B, *cy = cq + (q * 3 + 1) * B, *cz = cq + (q * 3 + 2) * B;
        double acc[10][B];
        memset(acc, 0, sizeof(acc));
        for (i64 p = 0; p < na; p++) {
            const double *pax = aq + (p * 3 + 0) * B, *pay = aq + (p * 3 + 1) * B, *paz = aq + (p * 3 + 2) * B;
            const double *w = W + (p * sp + q * sq) * B;
            for (int k = 0; k < B; k++) {
                const double ax = pax[k], ay = pay[k], az = paz[k];
                const double dx = ax - cx[k], dy = ay - cy[k], dz = az - cz[k];
                const double e = w[k] * exp_neg(h * (dx * dx + dy * dy + dz * dz));
                acc[0][k] += e;
                acc[1][k] += e * ax;
                acc[2][k] += e * ay;
                acc[3][k] += e * az;
                acc[4][k] += e * ax * ax;
                acc[5][k] += e * ax * ay;
                acc[6][k] += e * ax * az;
                acc[7][k] += e * ay * ay;
                acc[8][k] += e * ay * az;
                acc[9][k] += e * az * az;
            }
        }
        if (bw)
            for (int i = 0; i < 10; i++)
                for (int k = 0; k < B; k++) acc[i][k] *= bw[q * B + k];
        for (int k = 0; k < B; k++) {
            const double x = cx[k], y = cy[k], z = cz[k];
            f[k] += acc[0][k];
            const double tx = acc[1][k], ty = acc[2][k], tz = acc[3][k];
            gH[0 * B + k] += y * tz - z * ty; /* gradient: c x At */
            gH[1 * B + k] += z * tx - x * tz;
            gH[2 * B + k] += x * ty - y * tx;
            gH[9 * B + k] += tx * x; /* S = At c^T */
            gH[10 * B + k] += tx * y;
            gH[11 * B + k] += tx * z;
            gH[12 * B + k] += ty * x;
            gH[13 * B + k] += ty * y;
            gH[14 * B + k] += ty * z;
            gH[15 * B + k] += tz * x;
            gH[16 * B + k] += tz * y;
            gH[17 * B + k] += tz * z;
            /* [c]x M [c]x^T with M symmetric: K = C M, X = K C^T */
            const double m00 = acc[4][k], m01 = acc[5][k], m02 = acc[6][k], m11 = acc[7][k], m12 = acc[8][k], m22 = acc[9][k];
            const double k00 = -z * m01 + y * m02, k01 = -z * m11 + y * m12, k02 = -z * m12 + y * m22;
            const double k10 = z * m00 - x * m02, k11 = z * m01 - x * m12, k12 = z * m02 - x * m22;
            const double k20 = -y * m00 + x * m01, k21 = -y * m01 + x * m11;
            gH[3 * B + k] += -k01 * z + k02 * y;
            gH[4 * B + k] += k00 * z - k02 * x;
            gH[5 * B + k] += -k00 * y + k01 * x;
            gH[6 * B + k] += k10 * z - k12 * x;
            gH[7 * B + k] += -k10 * y + k11 * x;
            gH[8 * B + k] += -k20 * y + k21 * x;
        }
    }
    const double k2 = kap * kap;
    for (int k = 0; k < B; k++) {
        const double s00 = gH[9 * B + k], s01 = gH[10 * B + k], s02 = gH[11 * B + k];
        const double s10 = gH[12 * B + k], s11 = gH[13 * B + k], s12 = gH[14 * B + k];
        const double s20 = gH[15 * B + k], s21 = gH[16 * B + k], s22 = gH[17 * B + k];
        const double tr = s00 + s11 + s22;
        gH[0 * B + k] *= kap;
        gH[1 * B + k] *= kap;
        gH[2 * B + k] *= kap;
        gH[3 * B + k] = k2 * gH[3 * B + k] + kap * (s00 - tr);
        gH[4 * B + k] = k2 * gH[4 * B + k] + kap * 0.5 * (s01 + s10);
        gH[5 * B + k] = k2 * gH[5 * B + k] + kap * 0.5 * (s02 + s20);
        gH[6 * B + k] = k2 * gH[6 * B + k] + kap * (s11 - tr);
        gH[7 * B + k] = k2 * gH[7 * B + k] + kap * 0.5 * (s12 + s21);
        gH[8 * B + k] = k2 * gH[8 * B + k] + kap * (s22 - tr);
    }
}

/* Eigenvalues lam and eigenvectors (columns of V) of the symmetric 3 x 3 matrix S (cyclic Jacobi). */
static void eig3(double S[3][3], double lam[3], double V[3][3]) {
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) V[r][c] = r == c;
    for (int sweep = 0; sweep < 12; sweep++) {
        const double off = S[0][1] * S[0][1] + S[0][2] * S[0][2] + S[1][2] * S[1][2];
        const double dia = S[0][0] * S[0][0] + S[1][1] * S[1][1] + S[2][2] * S[2][2];
        if (off <= 1e-32 * dia || off == 0.0) break;
        for (int p = 0; p < 2; p++)
            for (int q = p + 1; q < 3; q++) {
                if (S[p][q] == 0.0) continue;
                const double th = (S[q][q] - S[p][p]) / (2.0 * S[p][q]);
                const double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 3; k++) { /* S <- S J */
                    const double kp = S[k][p], kq = S[k][q];
                    S[k][p] = c * kp - s * kq;
                    S[k][q] = s * kp + c * kq;
                }
                for (int k = 0; k < 3; k++) { /* S <- J^T S */
                    const double pk = S[p][k], qk = S[q][k];
                    S[p][k] = c * pk - s * qk;
                    S[q][k] = s * pk + c * qk;
                }
                for (int k = 0; k < 3; k++) {
                    const double kp = V[k][p], kq = V[k][q];
                    V[k][p] = c * kp - s * kq;
                    V[k][q] = s * kp + c * kq;
                }
            }
    }
    for (int r = 0; r < 3; r++) lam[r] = S[r][r];
}

/* Saddle-free Newton ascent steps, as in search.py: step = V |Lam|^-1 V^T g from the
 * eigendecomposition of the Hessian (|eigenvalues| clamped to 1e-12 of the largest), scaled by damp
 * and clipped to the trust radius; step (3 x B). gain: 0.5 g.|H|^-1 g, the increase the quadratic
 * model predicts; concave: all eigenvalues negative and the unclipped step inside the trust radius. */
static void newton_lanes(const double *restrict gH, const double *restrict damp, double *restrict step,
                         double *restrict gain, int *restrict concave) {
    for (int k = 0; k < B; k++) {
        const double g[3] = {gH[0 * B + k], gH[1 * B + k], gH[2 * B + k]};
        double x[3], gn, n;
        int neg;
        /* H negative definite (the usual case near a maximum): the saddle-free step is the Newton
         * step -H^-1 g, from the Cholesky factor of -H */
        const double a00 = -gH[3 * B + k], a01 = -gH[4 * B + k], a02 = -gH[5 * B + k];
        const double a11 = -gH[6 * B + k], a12 = -gH[7 * B + k], a22 = -gH[8 * B + k];
        const double scale = fabs(a00) + fabs(a11) + fabs(a22) + 1e-300;
        const double l00 = sqrt(fmax(a00, 1e-300)), l10 = a01 / l00, l20 = a02 / l00;
        const double t1 = a11 - l10 * l10, l11 = sqrt(fmax(t1, 1e-300)), l21 = (a12 - l20 * l10) / l11;
        const double t2 = a22 - l20 * l20 - l21 * l21, l22 = sqrt(fmax(t2, 1e-300));
        if (a00 > 1e-9 * scale && t1 > 1e-9 * scale && t2 > 1e-9 * scale) {
            const double y0 = g[0] / l00, y1 = (g[1] - l10 * y0) / l11, y2 = (g[2] - l20 * y0 - l21 * y1) / l22;
            x[2] = y2 / l22;
            x[1] = (y1 - l21 * x[2]) / l11;
            x[0] = (y0 - l10 * x[1] - l20 * x[2]) / l00;
            gn = y0 * y0 + y1 * y1 + y2 * y2;
            neg = 1;
        } else {
            double S[3][3] = {{gH[3 * B + k], gH[4 * B + k], gH[5 * B + k]},
                              {gH[4 * B + k], gH[6 * B + k], gH[7 * B + k]},
                              {gH[5 * B + k], gH[7 * B + k], gH[8 * B + k]}};
            double lam[3], V[3][3];
            eig3(S, lam, V);
            const double big = fmax(fabs(lam[0]), fmax(fabs(lam[1]), fabs(lam[2])));
            x[0] = x[1] = x[2] = gn = 0.0;
            for (int e = 0; e < 3; e++) {
                const double ge = V[0][e] * g[0] + V[1][e] * g[1] + V[2][e] * g[2];
                const double sc = fmax(fabs(lam[e]), 1e-12 * (big + 1e-300));
                gn += ge * ge / sc;
                for (int r = 0; r < 3; r++) x[r] += V[r][e] * ge / sc;
            }
            neg = lam[0] < 0 && lam[1] < 0 && lam[2] < 0;
        }
        n = sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]) + 1e-300;
        const double c = fmin(1.0, TRUST / n) * damp[k];
        step[0 * B + k] = x[0] * c;
        step[1 * B + k] = x[1] * c;
        step[2 * B + k] = x[2] * c;
        gain[k] = 0.5 * gn;
        concave[k] = neg && n <= TRUST;
    }
}

/* Rn = exp([step]x) R, per lane (Rodrigues). */
static void rotate_lanes(const double *restrict step, const double *restrict R, double *restrict Rn) {
    for (int k = 0; k < B; k++) {
        const double w0 = step[0 * B + k], w1 = step[1 * B + k], w2 = step[2 * B + k];
        const double th2 = w0 * w0 + w1 * w1 + w2 * w2, th = sqrt(th2);
        const int small = th < 1e-8;
        const double ths = small ? 1.0 : th;
        const double s = small ? 1.0 - th2 / 6.0 : sin(th) / ths;
        const double c = small ? 0.5 - th2 / 24.0 : (1.0 - cos(th)) / (ths * ths);
        const double E00 = 1.0 - c * (w1 * w1 + w2 * w2), E01 = -s * w2 + c * w0 * w1, E02 = s * w1 + c * w0 * w2;
        const double E10 = s * w2 + c * w0 * w1, E11 = 1.0 - c * (w0 * w0 + w2 * w2), E12 = -s * w0 + c * w1 * w2;
        const double E20 = -s * w1 + c * w0 * w2, E21 = s * w0 + c * w1 * w2, E22 = 1.0 - c * (w0 * w0 + w1 * w1);
        for (int q = 0; q < 3; q++) {
            const double r0 = R[q * B + k], r1 = R[(3 + q) * B + k], r2 = R[(6 + q) * B + k];
            Rn[q * B + k] = E00 * r0 + E01 * r1 + E02 * r2;
            Rn[(3 + q) * B + k] = E10 * r0 + E11 * r1 + E12 * r2;
            Rn[(6 + q) * B + k] = E20 * r0 + E21 * r1 + E22 * r2;
        }
    }
}

#define TOP_NET 16 /* pools up to this size get their threshold from a vector network (select_starts) */

/* Rearranges v[0..n) (and idx with it, when not NULL) so that its k largest values come first. */
static void largest_first(float *restrict v, int32_t *restrict idx, i64 n, i64 k) {
    i64 lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        i64 i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                const float tv = v[i]; v[i] = v[j]; v[j] = tv;
                if (idx) { const int32_t ti = idx[i]; idx[i] = idx[j]; idx[j] = ti; }
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* The (at most) K best starts of every lane for one parity of the stored grid F (B lanes per
 * point, flat index (beta * N + alpha) * N + gamma): among the pool largest values, the local maxima
 * (values not below any of their 26 neighbours, circular in alpha and gamma, not in beta) best
 * first, then the other values best first. The pool: the maxima of the rows of N values give a
 * threshold that the pool-th largest value reaches (pool rows have a value at or above it), the
 * values at or above it are gathered on whole vectors of lanes, and the pool largest of them are
 * kept. gmax [n_beta N B]: the maxima of the rows (from grid_block). Work space: cv / ci [B nG].
 * Writes sel / selv [B][K], ns [B]. */
static __attribute__((noinline)) void select_starts(const float *restrict F, i64 N, i64 n_beta, i64 pool, i64 K,
                                                    const float *restrict gmax, float *restrict cv, int32_t *restrict ci,
                                                    i64 *restrict pidx, float *restrict pval, int *restrict pmax,
                                                    i64 *restrict sel, float *restrict selv, i64 *restrict ns) {
    const i64 nG = N * N * n_beta, nrow = N * n_beta;
    vf thr;
    if (nrow > pool && pool <= TOP_NET) {
        /* the pool-th largest row maximum of every lane at once: a running top-pool list per lane,
         * kept sorted by compare-exchange steps on whole vectors (the same value as the selection
         * below, without a scalar pass per lane) */
        vf top[TOP_NET];
        const vf lowest = (vf){0} - 3e38f;
        for (i64 k = 0; k < pool; k++) top[k] = lowest;
        for (i64 r = 0; r < nrow; r++) {
            vf x = LD(gmax + r * B);
            for (i64 k = 0; k < pool; k++) {
                const vf t = top[k];
                const vi gt = x > t;
                top[k] = select_vf(gt, x, t);
                x = select_vf(gt, t, x);
            }
        }
        thr = top[pool - 1];
    } else {
        float tmp[nrow];
        for (int k = 0; k < B; k++) {
            for (i64 r = 0; r < nrow; r++) tmp[r] = gmax[r * B + k];
            if (nrow > pool) {
                largest_first(tmp, NULL, nrow, pool);
                float lo = tmp[0];
                for (i64 r = 1; r < pool; r++) lo = tmp[r] < lo ? tmp[r] : lo;
                thr[k] = lo;
            } else {
                thr[k] = -3e38f;
            }
        }
    }
    i64 cnt[B];
    for (int k = 0; k < B; k++) cnt[k] = 0;
    for (i64 r = 0; r < nrow; r++) {
        const vi hit = LD(gmax + r * B) >= thr; /* lanes with a value at or above the threshold in this row */
        for (int k = 0; k < B; k++) {
            if (!hit[k]) continue;
            i64 c = cnt[k];
            for (i64 t = r * N; t < (r + 1) * N; t++) { /* without a branch: stored always, kept if high */
                const float v = F[t * B + k];
                cv[k * nG + c] = v;
                ci[k * nG + c] = (int32_t)t;
                c += v >= thr[k];
            }
            cnt[k] = c;
        }
    }
    for (int k = 0; k < B; k++) {
        float *v = cv + k * nG, *pv = pval + k * pool;
        int32_t *ix = ci + k * nG;
        i64 *pi = pidx + k * pool;
        if (cnt[k] > pool) {
            largest_first(v, ix, cnt[k], pool);
            cnt[k] = pool;
        }
        for (i64 x = 0; x < cnt[k]; x++) { /* best first */
            i64 y = x;
            while (y > 0 && pv[y - 1] < v[x]) {
                pv[y] = pv[y - 1];
                pi[y] = pi[y - 1];
                y--;
            }
            pv[y] = v[x];
            pi[y] = ix[x];
        }
    }
    for (int k = 0; k < B; k++) {
        const float *pv = pval + k * pool;
        const i64 *pi = pidx + k * pool;
        /* best first: once K local maxima are found, the rest of the pool cannot be selected */
        i64 n_max = 0, tested = 0;
        for (i64 r = 0; r < cnt[k] && n_max < K; r++) {
            const i64 t = pi[r], bb = t / (N * N), a = (t / N) % N, g = t % N;
            /* the neighbouring alpha and gamma indices, circular (no division in the loop) */
            const i64 as3[3] = {a ? a - 1 : N - 1, a, a + 1 < N ? a + 1 : 0};
            const i64 gs3[3] = {g ? g - 1 : N - 1, g, g + 1 < N ? g + 1 : 0};
            int is_max = 1;
            for (i64 db = -1; db <= 1 && is_max; db++) {
                const i64 b2 = bb + db;
                if (b2 < 0 || b2 >= n_beta) continue;
                for (int da = 0; da < 3 && is_max; da++) {
                    const float *row = F + (b2 * N + as3[da]) * N * B + k;
                    for (int dg = 0; dg < 3; dg++) {
                        if (!db && da == 1 && dg == 1) continue;
                        if (row[gs3[dg] * B] > pv[r]) { is_max = 0; break; }
                    }
                }
            }
            pmax[r] = is_max;
            n_max += is_max;
            tested = r + 1;
        }
        i64 n = 0;
        for (int pass = 0; pass < 2; pass++)
            for (i64 r = 0; r < tested && n < K; r++)
                if (pmax[r] == (pass == 0)) {
                    sel[k * K + n] = pi[r];
                    selv[k * K + n] = pv[r];
                    n++;
                }
        ns[k] = n;
    }
}

/* The coefficients (real re[k], imaginary im[k]: Kc each) of the B lanes side by side,
 * coefficient by coefficient: out_r / out_i [Kc][B], whole vectors stored. */
static void to_lanes(const float *const re[B], const float *const im[B], i64 Kc, float *restrict out_r,
                     float *restrict out_i) {
    for (i64 x = 0; x < Kc; x++) {
        vf vr, vi_;
        for (int k = 0; k < B; k++) {
            vr[k] = re[k][x];
            vi_[k] = im[k][x];
        }
        ST(out_r + x * B, vr);
        ST(out_i + x * B, vi_);
    }
}

/* Pairs (ia[t], ib[t]), t < n (indices of side A and of side B), best sorted by neighbour counts:
 * writes the distance of each to out[t] and, when rot is not NULL, the rotation of its best start
 * (row-major, mapping B onto A) to rot[9 t]. Returns 0, or -1 when scratch memory could not be
 * allocated. */
int giip_search(const Args *A, i64 n, const i64 *ia, const i64 *ib, double *out, double *rot) {
    const i64 L = A->L, M = 2 * L + 1, L1 = L + 1, N = A->N, D = A->D, qa = A->qa, qb = A->qb, Kc = A->Kc;
    const i64 n_beta = A->n_beta, nG = N * N * n_beta, C = A->C, par_n = A->parities;
    const i64 K = A->K, pool = A->pool > K ? A->pool : K;
    const int store = K > 1;
    if (n <= 0) return 0;
    const size_t fsz = sizeof(float), dsz = sizeof(double), isz = sizeof(i64);
    const i64 maxc = n * par_n * K;
    float *G_r = malloc(fsz * D * B), *G_i = malloc(fsz * D * B);
    float *H_r = malloc(fsz * 2 * M * L1 * B), *H_i = malloc(fsz * 2 * M * L1 * B);
    float *U_r = malloc(fsz * 2 * L1 * N * B), *U_i = malloc(fsz * 2 * L1 * N * B);
    float *PQ = malloc(fsz * 4 * L1 * B), *Cb_r = malloc(fsz * Kc * B), *Cb_i = malloc(fsz * Kc * B);
    float *Ca_r = malloc(fsz * Kc * B), *Ca_i = malloc(fsz * Kc * B);
    float *Fbuf = store ? malloc(fsz * 2 * nG * B) : NULL, *gmax = malloc(fsz * 2 * N * n_beta * B);
    float *cv = store ? malloc(fsz * nG * B) : NULL;
    int32_t *ci32 = store ? malloc(sizeof(int32_t) * nG * B) : NULL;
    i64 *cand_t = malloc(isz * maxc), *cand_g = malloc(isz * maxc);
    float *cand_v = malloc(fsz * maxc);
    i64 *pidx = malloc(isz * pool * B), *sel = malloc(isz * K * 2 * B), nsel[2 * B];
    float *pval = malloc(fsz * pool * B), *selv = malloc(fsz * K * 2 * B);
    int *pmax = malloc(sizeof(int) * pool);
    double *aq = malloc(dsz * qa * 3 * B), *bq = malloc(dsz * qb * 3 * B), *cq = malloc(dsz * qb * 3 * B);
    double *W = malloc(dsz * qa * qb * B), *bw = malloc(dsz * qb * B), *fbest = malloc(dsz * n);
    i64 *t_start = malloc(isz * (2 * M * L1 + 1));
    int status = 0;
    if (!G_r || !G_i || !H_r || !H_i || !U_r || !U_i || !PQ || !Cb_r || !Cb_i || !Ca_r || !Ca_i ||
        (store && (!Fbuf || !cv || !ci32)) || !gmax || !cand_t || !cand_g || !cand_v || !pidx || !sel || !pval ||
        !selv || !pmax || !aq || !bq || !cq || !W || !bw || !fbest || !t_start) {
        status = -1;
        goto done;
    }
    /* rows of H: the coupling entries come sorted by their row t, entries t_start[t] .. t_start[t+1]-1 */
    for (i64 t = 0, d = 0; t <= 2 * M * L1; t++) {
        while (d < D && A->g_t[d] < t) d++;
        t_start[t] = d;
    }
    memset(aq, 0, dsz * qa * 3 * B);
    memset(bq, 0, dsz * qb * 3 * B);
    memset(W, 0, dsz * qa * qb * B);
    memset(bw, 0, dsz * qb * B);
    float best_v[2 * B], best_i[2 * B];
    double f[B], fn[B], gH[18 * B] = {0}, gH2[18 * B], R[9 * B], Rn[9 * B], step[3 * B], damp[B], gain[B];
    int concave[B], fresh[B];
    i64 lane_c[B], iters[B], rejected[B], ext_a[B], ext_b[B];
    for (int k = 0; k < B; k++) ext_a[k] = ext_b[k] = 0;
    const double rel = 1e-13;
    /* grid stage: the starts of every pair, each pair's starts best first */
    i64 nc = 0, a_last = -1;
    for (i64 c0 = 0; c0 < n; c0 += B) {
        /* the coefficients of the block's pairs side by side, coefficient by coefficient (whole
         * vectors stored); side A is usually one atom for the whole block (pairs of an atom come
         * together), then broadcast, and kept from the block before when it was the same atom */
        const float *xr[B], *xi[B], *yr[B], *yi[B];
        i64 a_of = ia[c0];
        for (int k = 0; k < B; k++) {
            const i64 t = c0 + k < n ? c0 + k : n - 1;
            xr[k] = A->ca_r + ia[t] * Kc;
            xi[k] = A->ca_i + ia[t] * Kc;
            yr[k] = A->cb_r + ib[t] * Kc;
            yi[k] = A->cb_i + ib[t] * Kc;
            if (ia[t] != a_of) a_of = -1;
        }
        to_lanes(yr, yi, Kc, Cb_r, Cb_i);
        if (a_of < 0 || a_of != a_last) {
            if (a_of >= 0)
                for (i64 x = 0; x < Kc; x++) {
                    ST(Ca_r + x * B, (vf){0} + xr[0][x]);
                    ST(Ca_i + x * B, (vf){0} + xi[0][x]);
                }
            else
                to_lanes(xr, xi, Kc, Ca_r, Ca_i);
            a_last = a_of;
        }
        grid_block(A, Ca_r, Ca_i, Cb_r, Cb_i, Fbuf, G_r, G_i, H_r, H_i, U_r, U_i, PQ, PQ + L1 * B, PQ + 2 * L1 * B,
                   PQ + 3 * L1 * B, best_v, best_i, gmax, t_start);
        if (store)
            for (i64 par = 0; par < par_n; par++)
                select_starts(Fbuf + par * nG * B, N, n_beta, pool, K, gmax + par * N * n_beta * B, cv, ci32, pidx, pval, pmax,
                              sel + par * B * K, selv + par * B * K, nsel + par * B);
        for (int k = 0; k < B && c0 + k < n; k++) {
            const i64 first = nc;
            for (i64 par = 0; par < par_n; par++) {
                if (!store) {
                    const i64 gi = (i64)best_i[par * B + k];
                    cand_t[nc] = c0 + k;
                    cand_g[nc] = par == 0 ? gi : -1 - gi;
                    cand_v[nc] = best_v[par * B + k];
                    nc++;
                    continue;
                }
                const i64 *sq = sel + (par * B + k) * K;
                const float *sv = selv + (par * B + k) * K;
                for (i64 q = 0; q < nsel[par * B + k]; q++) {
                    cand_t[nc] = c0 + k;
                    cand_g[nc] = par == 0 ? sq[q] : -1 - sq[q];
                    cand_v[nc] = sv[q];
                    nc++;
                }
            }
            for (i64 x = first + 1; x < nc; x++) { /* best grid value first: pruning starts early */
                const i64 g = cand_g[x];
                const float v = cand_v[x];
                i64 y = x;
                while (y > first && cand_v[y - 1] < v) {
                    cand_g[y] = cand_g[y - 1];
                    cand_v[y] = cand_v[y - 1];
                    y--;
                }
                cand_g[y] = g;
                cand_v[y] = v;
            }
            if (A->window > 0) {
                const i64 t = c0 + k;
                const double lo = cand_v[first] - A->window * 0.5 * (A->self_a[ia[t]] + A->self_b[ib[t]]);
                i64 keep = first + 1;
                while (keep < nc && cand_v[keep] >= lo) keep++;
                nc = keep;
            }
        }
    }
    /* polish: B starts at a time; a lane whose start is finished loads the next one */
    for (i64 t = 0; t < n; t++) fbest[t] = -1e300;
    i64 next = 0, n_active = 0;
    for (int k = 0; k < B; k++) lane_c[k] = -1;
    for (;;) {
        for (int k = 0; k < B; k++) {
            if (lane_c[k] >= 0 || next >= nc) continue;
            const i64 c = next++, t = cand_t[c], i = ia[t], j = ib[t];
            i64 gi = cand_g[c];
            double sg = 1.0;
            if (gi < 0) { gi = -1 - gi; sg = -1.0; }
            for (int x = 0; x < 9; x++) R[x * B + k] = sg * A->rgrid[gi * 9 + x];
            const double *pai = A->pa + i * qa * 3, *wai = A->wa + i * qa * C;
            const double *pbj = A->pb + j * qb * 3, *wbj = A->wb + j * qb * C;
            const i64 na = A->cnt_a[i], nb = A->cnt_b[j];
            /* the weights of this pair, and zeros where the lane's previous pair had neighbours */
            const i64 pe = na > ext_a[k] ? na : ext_a[k], qe = nb > ext_b[k] ? nb : ext_b[k];
            for (i64 p = 0; p < na; p++)
                for (int x = 0; x < 3; x++) aq[(p * 3 + x) * B + k] = pai[p * 3 + x];
            for (i64 q = 0; q < nb; q++)
                for (int x = 0; x < 3; x++) bq[(q * 3 + x) * B + k] = pbj[q * 3 + x];
            if (C == 1) { /* weights that factorise: W[p B + k] and bw[q B + k] */
                for (i64 p = 0; p < pe; p++) W[p * B + k] = p < na ? wai[p] : 0.0;
                for (i64 q = 0; q < qe; q++) bw[q * B + k] = q < nb ? wbj[q] : 0.0;
            } else {
                for (i64 p = 0; p < pe; p++)
                    for (i64 q = 0; q < qe; q++) {
                        double w = 0.0;
                        if (p < na && q < nb)
                            for (i64 ch = 0; ch < C; ch++) w += wai[p * C + ch] * wbj[q * C + ch];
                        W[(p * qb + q) * B + k] = w;
                    }
            }
            ext_a[k] = na;
            ext_b[k] = nb;
            lane_c[k] = c;
            fresh[k] = 1;
            iters[k] = rejected[k] = 0;
            damp[k] = 1.0;
            n_active++;
        }
        if (!n_active) break;
        i64 np = 0, nq = 0;
        for (int k = 0; k < B; k++) {
            if (lane_c[k] < 0) continue;
            const i64 t = cand_t[lane_c[k]];
            if (A->cnt_a[ia[t]] > np) np = A->cnt_a[ia[t]];
            if (A->cnt_b[ib[t]] > nq) nq = A->cnt_b[ib[t]];
        }
        newton_lanes(gH, damp, step, gain, concave);
        for (int k = 0; k < B; k++)
            if (fresh[k] || lane_c[k] < 0) step[k] = step[B + k] = step[2 * B + k] = 0.0;
        rotate_lanes(step, R, Rn);
        /* the gradient and Hessian are needed unless every lane takes its last step */
        int want = A->tol > 0;
        for (int k = 0; k < B && !want; k++)
            if (lane_c[k] >= 0 && (fresh[k] ? A->max_iter > 0 : iters[k] + 1 < A->max_iter)) want = 1;
        eval_lanes(aq, np, bq, nq, qb, W, C == 1 ? bw : NULL, A->kap, Rn, cq, want, fn, gH2);
        for (int k = 0; k < B; k++) {
            const i64 c = lane_c[k];
            if (c < 0) continue;
            const i64 t = cand_t[c];
            const double f_before = f[k];
            int ok = 1, finished = 0;
            if (fresh[k]) {
                fresh[k] = 0;
            } else {
                iters[k]++;
                ok = fn[k] >= f[k] - rel * fabs(f[k]);
            }
            if (ok) {
                f[k] = fn[k];
                for (int x = 0; x < 9; x++) R[x * B + k] = Rn[x * B + k];
                for (int x = 0; x < 9; x++) gH[x * B + k] = gH2[x * B + k];
                damp[k] = 1.0;
                rejected[k] = 0;
            } else {
                damp[k] *= 0.5;
                rejected[k]++;
            }
            if (f[k] > fbest[t]) {
                fbest[t] = f[k];
                if (rot)
                    for (int x = 0; x < 9; x++) rot[9 * t + x] = R[x * B + k];
            }
            if (iters[k] >= A->max_iter || rejected[k] > 10) finished = 1;
            if (A->tol > 0 && iters[k] > 0) {
                const double sn = sqrt(step[k] * step[k] + step[B + k] * step[B + k] + step[2 * B + k] * step[2 * B + k]);
                if (ok && sn <= A->tol) finished = 1;
                /* a start that cannot win: inside a concave quadratic model whose Newton step
                 * predicts a maximum of f_before + gain, and even twice that gain stays below the
                 * best value already reached by another start of the pair */
                if (concave[k] && f_before + 2.0 * gain[k] + 1e-12 * fabs(f_before) < fbest[t] - 1e-9) finished = 1;
            }
            if (finished) {
                lane_c[k] = -1;
                n_active--;
            }
        }
    }
    for (i64 t = 0; t < n; t++) {
        const double d2 = A->self_a[ia[t]] + A->self_b[ib[t]] - 2.0 * fbest[t];
        out[t] = d2 > 0 ? sqrt(d2) : 0.0;
    }
done:
    free(G_r); free(G_i); free(H_r); free(H_i); free(U_r); free(U_i); free(PQ); free(Cb_r); free(Cb_i);
    free(Ca_r); free(Ca_i); free(Fbuf); free(gmax); free(cv); free(ci32);
    free(cand_t); free(cand_g); free(cand_v); free(pidx); free(sel); free(pval); free(selv); free(pmax);
    free(aq); free(bq); free(cq); free(W); free(bw); free(fbest); free(t_start);
    return status;
}

/* ------------------------------------------------------------------------------------------------
 * 2D: the rotation search over O(2) / SO(2) for one common sigma (fused.py, search_pairs on a 2D
 * engine). f(theta) = sum_ij W_ij exp(-g |a_i - R(theta) b_j|^2), g = kap / 2, is a function of one
 * angle: with polar coordinates, |a_i - R b_j|^2 = (r_i - r_j)^2 + 2 r_i r_j (1 - cos(D_ij - theta)),
 * D_ij = phi_i - phi_j (phi_j -> -phi_j for the reflected parity, R = R(theta) diag(1, -1)). The
 * grid evaluates f exactly at N angles (the PyTorch path sums its Fourier series to the band limit
 * on the same angles); the K best local maxima of each parity start 1D Newton ascents (saddle-free
 * steps, the 0.3 rad trust radius, a step that lowers f halved up to 10 times), to convergence
 * (step below tol) or for max_iter steps when tol <= 0 (the coarse search). */
typedef struct {
    i64 qa, qb, C;
    const double *pa, *wa, *self_a;
    const i64 *cnt_a;
    const double *pb, *wb, *self_b;
    const i64 *cnt_b;
    double kap;
    i64 N, parities, max_iter, K;
    double tol;
} Args2D;

/* exp(x) for x <= 0 as exp_neg, with 2^n built from the bits of n + 1.5 * 2^52 (integer adds and
 * shifts on 64-bit lanes, no double-to-int64 conversion), so that AVX2 vectorises loops of it; n is
 * rounded first (rint), so that -ffast-math cannot fold the shift away */
static inline double exp_neg2(double x) {
    x = x < -700.0 ? -700.0 : x;
    const double n = __builtin_rint(x * 1.4426950408889634);
    const double shifted = n + 6755399441055744.0; /* exact: n is an integer; its bits give n */
    const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
    const double p = exp_poly(r);
    int64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4338000000000000LL + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

double giip_exp_neg2(double x) { return exp_neg2(x); }

/* f, f' and f'' at angle t from the pair terms (amplitude w, k = 2 g r_i r_j, cos / sin of D) */
static inline void eval_2d(i64 m, const double *restrict w, const double *restrict k, const double *restrict cd,
                           const double *restrict sd, double t, double *f, double *g1, double *h) {
    const double ct = cos(t), st = sin(t);
    double F = 0.0, G = 0.0, H = 0.0;
    for (i64 q = 0; q < m; q++) {
        const double c = cd[q] * ct + sd[q] * st, s = sd[q] * ct - cd[q] * st; /* cos, sin of (D - t) */
        const double e = w[q] * exp_neg2(-k[q] * (1.0 - c));
        F += e;
        G += e * k[q] * s;
        H += e * (k[q] * k[q] * s * s - k[q] * c);
    }
    *f = F;
    if (g1) *g1 = G;
    if (h) *h = H;
}

int giip_search_2d(const Args2D *A, i64 n, const i64 *ia, const i64 *ib, double *out, double *rot) {
    const i64 qa = A->qa, qb = A->qb, C = A->C, N = A->N, K = A->K > 0 ? A->K : 1;
    const double g = 0.5 * A->kap, two_pi = 6.283185307179586;
    const double rel = 1e-13;
    double *w = malloc(sizeof(double) * qa * qb), *k = malloc(sizeof(double) * qa * qb);
    double *cd = malloc(sizeof(double) * qa * qb), *sd = malloc(sizeof(double) * qa * qb);
    double *ra = malloc(sizeof(double) * qa), *pha = malloc(sizeof(double) * qa);
    double *rb = malloc(sizeof(double) * qb), *phb = malloc(sizeof(double) * qb);
    double *grid = malloc(sizeof(double) * N), *cgrid = malloc(sizeof(double) * N), *sgrid = malloc(sizeof(double) * N);
    i64 *starts = malloc(sizeof(i64) * N);
    int status = 0;
    if (!w || !k || !cd || !sd || !ra || !pha || !rb || !phb || !grid || !cgrid || !sgrid || !starts) {
        status = -1;
        goto done2;
    }
    for (i64 t = 0; t < N; t++) {
        cgrid[t] = cos(two_pi * (double)t / (double)N);
        sgrid[t] = sin(two_pi * (double)t / (double)N);
    }
    for (i64 p = 0; p < n; p++) {
        const i64 i = ia[p], j = ib[p], na = A->cnt_a[i], nb = A->cnt_b[j];
        const double *a = A->pa + i * qa * 2, *b = A->pb + j * qb * 2;
        const double *wa = A->wa + i * qa * C, *wb = A->wb + j * qb * C;
        for (i64 u = 0; u < na; u++) {
            ra[u] = sqrt(a[2 * u] * a[2 * u] + a[2 * u + 1] * a[2 * u + 1]);
            pha[u] = atan2(a[2 * u + 1], a[2 * u]);
        }
        for (i64 v = 0; v < nb; v++) {
            rb[v] = sqrt(b[2 * v] * b[2 * v] + b[2 * v + 1] * b[2 * v + 1]);
            phb[v] = atan2(b[2 * v + 1], b[2 * v]);
        }
        double best = -INFINITY, best_t = 0.0;
        int best_par = 0;
        for (int par = 0; par < A->parities; par++) {
            const double sgn = par ? -1.0 : 1.0;
            i64 m = 0;
            for (i64 u = 0; u < na; u++)
                for (i64 v = 0; v < nb; v++) {
                    double W = 0.0;
                    for (i64 c = 0; c < C; c++) W += wa[u * C + c] * wb[v * C + c];
                    if (W == 0.0) continue;
                    const double dr = ra[u] - rb[v];
                    w[m] = W * exp_neg(-g * dr * dr);
                    k[m] = 2.0 * g * ra[u] * rb[v];
                    const double D = pha[u] - sgn * phb[v];
                    cd[m] = cos(D);
                    sd[m] = sin(D);
                    m++;
                }
            if (m == 0) { /* no overlap at any angle */
                if (best < 0.0) { best = 0.0; best_t = 0.0; best_par = par; }
                continue;
            }
            /* the grid: f at N angles (term by term, the angles in the inner, vectorised loop) */
            for (i64 t = 0; t < N; t++) grid[t] = 0.0;
            for (i64 q = 0; q < m; q++) {
                const double wq = w[q], kq = k[q], cq = cd[q], sq = sd[q];
                for (i64 t = 0; t < N; t++)
                    grid[t] += wq * exp_neg2(-kq * (1.0 - (cq * cgrid[t] + sq * sgrid[t])));
            }
            /* the K best local maxima (circular) */
            i64 ns = 0;
            for (i64 t = 0; t < N; t++) {
                const double l = grid[(t + N - 1) % N], r = grid[(t + 1) % N];
                if (grid[t] >= l && grid[t] >= r) starts[ns++] = t;
            }
            if (ns == 0) starts[ns++] = 0;
            for (i64 s = 0; s < ns && s < K; s++) { /* partial selection sort, best first */
                i64 bi = s;
                for (i64 q = s + 1; q < ns; q++)
                    if (grid[starts[q]] > grid[starts[bi]]) bi = q;
                const i64 tmp = starts[s]; starts[s] = starts[bi]; starts[bi] = tmp;
            }
            for (i64 s = 0; s < ns && s < K; s++) {
                double t = two_pi * (double)starts[s] / (double)N, f, g1, h;
                eval_2d(m, w, k, cd, sd, t, &f, &g1, &h);
                for (i64 it = 0; it < A->max_iter; it++) {
                    double step = g1 / fmax(fabs(h), 1e-300);
                    if (step > TRUST) step = TRUST;
                    if (step < -TRUST) step = -TRUST;
                    double fn, gn, hn;
                    int ok = 0;
                    for (int bt = 0; bt < 11; bt++) {
                        eval_2d(m, w, k, cd, sd, t + step, &fn, &gn, &hn);
                        if (fn >= f - rel * fabs(f)) { ok = 1; break; }
                        step *= 0.5;
                    }
                    if (!ok) break;
                    t += step;
                    f = fn; g1 = gn; h = hn;
                    if (A->tol > 0.0 && fabs(step) <= A->tol) break;
                }
                if (f > best) { best = f; best_t = t; best_par = par; }
            }
        }
        const double d2 = A->self_a[i] + A->self_b[j] - 2.0 * best;
        out[p] = sqrt(d2 > 0.0 ? d2 : 0.0);
        if (rot) {
            const double c = cos(best_t), s = sin(best_t), f2 = best_par ? -1.0 : 1.0;
            rot[4 * p + 0] = c; rot[4 * p + 1] = -s * f2; /* R(t) diag(1, f2), row major */
            rot[4 * p + 2] = s; rot[4 * p + 3] = c * f2;
        }
    }
done2:
    free(w); free(k); free(cd); free(sd); free(ra); free(pha); free(rb); free(phb);
    free(grid); free(cgrid); free(sgrid); free(starts);
    return status;
}
