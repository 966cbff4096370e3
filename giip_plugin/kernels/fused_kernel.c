/* Fused coarse rotation search of the fast path (see fused.py for the method and the host side).
 *
 * One call maps a range of atoms (side A) against every reference (side B): for each atom, the
 * band-limited grid in single precision over blocks of B references side by side (SIMD lanes), then
 * the Newton polish of the best grid point of each parity on the exact sum of Gaussians in double
 * precision, B starts at a time. The grid works on vectors of B lanes (GCC/Clang vector extension);
 * the polish's loops over lanes have the compile-time trip count B on restrict-qualified scratch
 * arrays, which the compiler vectorises as well (built with -O3 -march=native -ffast-math by
 * fused.py). Compiled at first use and loaded with ctypes; a call holds no Python state, so
 * several threads run calls on disjoint atom ranges at once.
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
static inline double exp_neg(double x) {
    x = x < -700.0 ? -700.0 : x;
    const double n = __builtin_round(x * 1.4426950408889634);
    const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
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
    p = p * r + 1.0;
    union { double d; int64_t i; } u;
    u.i = ((int64_t)n + 1023) << 52;
    return p * u.d;
}

double giip_exp_neg(double x) { return exp_neg(x); }

typedef struct {
    /* side A */
    i64 qa, C, Kc;
    const double *pa, *wa, *self_a;
    const i64 *cnt_a;
    const float *ca_r, *ca_i;
    /* side B, sorted by neighbour count; coefficients (nblk, Kc, B) */
    i64 nB, qb;
    const double *pb, *wb, *self_b;
    const i64 *cnt_b;
    const float *cb_r, *cb_i;
    /* grid */
    double kap;
    i64 L, D, n_beta, N;
    const i64 *g_offa, *g_offb, *g_w, *g_k, *g_t;
    const float *dval, *cw, *sw, *cal, *sal;
    const double *rgrid;
    i64 parities, n_iter;
} Args;

/* B single-precision lanes as one vector (GCC/Clang vector extension: one AVX-512 register, two
 * AVX ones); unaligned loads and stores through these pointer types. */
typedef float vf __attribute__((vector_size(4 * B), aligned(4)));
typedef int32_t vi __attribute__((vector_size(4 * B), aligned(4)));
#define LD(p) (*(const vf *)(p))
#define ST(p, x) (*(vf *)(p) = (x))

static inline vf select_vf(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* Best grid value and flat index per lane and parity (best_v, best_i: [2][B]) of atom i against
 * the block blk of B references. */
static inline __attribute__((always_inline)) void
grid_block_impl(const Args *A, i64 i, i64 blk, float *restrict G_r, float *restrict G_i, float *restrict H_r,
                float *restrict H_i, float *restrict U_r, float *restrict U_i, float *restrict Pr,
                float *restrict Pi, float *restrict Qr, float *restrict Qi, float *restrict best_v,
                float *restrict best_i, const i64 *restrict t_start, const i64 L, const i64 N, const i64 n_beta) {
    const i64 M = 2 * L + 1, L1 = L + 1, D = A->D;
    const float *ca_r = A->ca_r + i * A->Kc, *ca_i = A->ca_i + i * A->Kc;
    const float *cb_r = A->cb_r + blk * A->Kc * B, *cb_i = A->cb_i + blk * A->Kc * B;
    const vf zero = {0};
    /* coupling G = C_A^T conj(C_B), entry by entry (l, m, m' >= 0) */
    for (i64 d = 0; d < D; d++) {
        vf gr = zero, gi = zero;
        const i64 oa = A->g_offa[d], ob = A->g_offb[d], w = A->g_w[d];
        for (i64 n = 0; n < A->g_k[d]; n++) {
            const float xr = ca_r[oa + n * w], xi = ca_i[oa + n * w];
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
                    vf cr[2] = {zero, zero}, ci[2] = {zero, zero}, sr[2] = {zero, zero}, si[2] = {zero, zero};
                    for (int o = 0; o < 2; o++) {
                        for (i64 mp = o; mp < L1; mp += 2) {
                            const float c = A->cw[mp * N + g], s = A->sw[mp * N + g];
                            cr[o] += c * LD(Pr + mp * B);
                            ci[o] += c * LD(Pi + mp * B);
                            sr[o] += s * LD(Qi + mp * B);
                            si[o] -= s * LD(Qr + mp * B);
                        }
                    }
                    const vf c0r = cr[0], c0i = ci[0], s0r = sr[0], s0i = si[0];
                    const vf c1r = cr[1], c1i = ci[1], s1r = sr[1], s1i = si[1];
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
                vf ce[2] = {zero, zero}, se[2] = {zero, zero}, co[2] = {zero, zero}, so[2] = {zero, zero};
                for (int o = 0; o < 2; o++) {
                    for (i64 m = o; m < L1; m += 2) {
                        const float c = A->cal[m * N + a], s = A->sal[m * N + a];
                        ce[o] += c * LD(U_r + (m * N + g) * B);
                        se[o] += s * LD(U_i + (m * N + g) * B);
                        co[o] += c * LD(U_r + ((L1 + m) * N + g) * B);
                        so[o] += s * LD(U_i + ((L1 + m) * N + g) * B);
                    }
                }
                const vf ce0 = ce[0], se0 = se[0], co0 = co[0], so0 = so[0];
                const vf ce1 = ce[1], se1 = se[1], co1 = co[1], so1 = so[1];
                const i64 as[4] = {a, a + N / 2, (N - a) % N, N / 2 - a};
                const vf fe[4] = {ce0 + ce1 + se0 + se1, ce0 - ce1 + se0 - se1, ce0 + ce1 - se0 - se1, ce0 - ce1 - se0 + se1};
                const vf fo[4] = {co0 + co1 + so0 + so1, co0 - co1 + so0 - so1, co0 + co1 - so0 - so1, co0 - co1 - so0 + so1};
                for (int v = 0; v < 4; v++) {
                    const vf idx = zero + (float)((bb * N + as[v]) * N + g);
                    const vf vp = fe[v] + fo[v], vm = fe[v] - fo[v];
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
static void grid_block(const Args *A, i64 i, i64 blk, float *G_r, float *G_i, float *H_r, float *H_i,
                       float *U_r, float *U_i, float *Pr, float *Pi, float *Qr, float *Qi, float *best_v,
                       float *best_i, const i64 *t_start) {
    if (A->L == 6 && A->N == 14 && A->n_beta == 7)
        grid_block_impl(A, i, blk, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, t_start, 6, 14, 7);
    else if (A->L == 7 && A->N == 16 && A->n_beta == 8)
        grid_block_impl(A, i, blk, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, t_start, 7, 16, 8);
    else
        grid_block_impl(A, i, blk, G_r, G_i, H_r, H_i, U_r, U_i, Pr, Pi, Qr, Qi, best_v, best_i, t_start, A->L,
                        A->N, A->n_beta);
}

/* Overlap f[B] of the atom's neighbours a (na x 3) with B rotated environments bq (nq x 3 x B),
 * weights W (na x nq x B), rotations R (9 x B, row-major); with want, gradient and Hessian in gH
 * (18 x B): rows 0-2 gradient, 3-8 Hessian (00 01 02 11 12 22), 9-17 work space. */
static void eval_lanes(const double *restrict a, i64 na, const double *restrict bq, i64 nq,
                       const double *restrict W, double kap, const double *restrict R,
                       double *restrict cq, int want, double *restrict f, double *restrict gH) {
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
    if (!want) {
        for (i64 q = 0; q < nq; q++) {
            const double *cx = cq + (q * 3 + 0) * B, *cy = cq + (q * 3 + 1) * B, *cz = cq + (q * 3 + 2) * B;
            for (i64 p = 0; p < na; p++) {
                const double ax = a[p * 3], ay = a[p * 3 + 1], az = a[p * 3 + 2];
                const double *w = W + (p * nq + q) * B;
                for (int k = 0; k < B; k++) {
                    const double dx = ax - cx[k], dy = ay - cy[k], dz = az - cz[k];
                    f[k] += w[k] * exp_neg(h * (dx * dx + dy * dy + dz * dz));
                }
            }
        }
        return;
    }
    for (int t = 0; t < 18 * B; t++) gH[t] = 0.0;
    for (i64 q = 0; q < nq; q++) {
        const double *cx = cq + (q * 3 + 0) * B, *cy = cq + (q * 3 + 1) * B, *cz = cq + (q * 3 + 2) * B;
        double acc[10][B];
        memset(acc, 0, sizeof(acc));
        for (i64 p = 0; p < na; p++) {
            const double ax = a[p * 3], ay = a[p * 3 + 1], az = a[p * 3 + 2];
            const double axx = ax * ax, axy = ax * ay, axz = ax * az, ayy = ay * ay, ayz = ay * az, azz = az * az;
            const double *w = W + (p * nq + q) * B;
            for (int k = 0; k < B; k++) {
                const double dx = ax - cx[k], dy = ay - cy[k], dz = az - cz[k];
                const double e = w[k] * exp_neg(h * (dx * dx + dy * dy + dz * dz));
                acc[0][k] += e;
                acc[1][k] += e * ax;
                acc[2][k] += e * ay;
                acc[3][k] += e * az;
                acc[4][k] += e * axx;
                acc[5][k] += e * axy;
                acc[6][k] += e * axz;
                acc[7][k] += e * ayy;
                acc[8][k] += e * ayz;
                acc[9][k] += e * azz;
            }
        }
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

/* Newton ascent steps (Cholesky of -H where H is negative definite, else a gradient step), scaled
 * by damp and clipped to the trust radius; step (3 x B). */
static void newton_lanes(const double *restrict gH, const double *restrict damp, double *restrict step) {
    for (int k = 0; k < B; k++) {
        const double g0 = gH[0 * B + k], g1 = gH[1 * B + k], g2 = gH[2 * B + k];
        const double a00 = -gH[3 * B + k], a01 = -gH[4 * B + k], a02 = -gH[5 * B + k];
        const double a11 = -gH[6 * B + k], a12 = -gH[7 * B + k], a22 = -gH[8 * B + k];
        const double scale = fabs(a00) + fabs(a11) + fabs(a22) + 2.0 * (fabs(a01) + fabs(a02) + fabs(a12)) + 1e-300;
        const double tiny = 1e-12 * scale;
        const double l00 = sqrt(fmax(a00, tiny));
        const double l10 = a01 / l00, l20 = a02 / l00;
        const double t1 = a11 - l10 * l10;
        const double l11 = sqrt(fmax(t1, tiny));
        const double l21 = (a12 - l20 * l10) / l11;
        const double t2 = a22 - l20 * l20 - l21 * l21;
        const double l22 = sqrt(fmax(t2, tiny));
        const double y0 = g0 / l00, y1 = (g1 - l10 * y0) / l11, y2 = (g2 - l20 * y0 - l21 * y1) / l22;
        const double x2 = y2 / l22, x1 = (y1 - l21 * x2) / l11, x0 = (y0 - l10 * x1 - l20 * x2) / l00;
        const int ok = (a00 > tiny) && (t1 > tiny) && (t2 > tiny);
        const double gn = sqrt(g0 * g0 + g1 * g1 + g2 * g2) + 1e-300;
        const double sg = fmin(TRUST / gn, 1.0 / scale);
        const double s0 = ok ? x0 : g0 * sg, s1 = ok ? x1 : g1 * sg, s2 = ok ? x2 : g2 * sg;
        const double n = sqrt(s0 * s0 + s1 * s1 + s2 * s2) + 1e-300;
        const double c = fmin(1.0, TRUST / n) * damp[k];
        step[0 * B + k] = s0 * c;
        step[1 * B + k] = s1 * c;
        step[2 * B + k] = s2 * c;
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

/* Coarse distances out (i1 - i0, nB) of atoms i0 .. i1-1 to every reference (sorted order).
 * Returns 0, or -1 when scratch memory could not be allocated. */
int giip_coarse_rows(const Args *A, i64 i0, i64 i1, double *out) {
    const i64 L = A->L, M = 2 * L + 1, L1 = L + 1, N = A->N, D = A->D, nB = A->nB, qb = A->qb;
    const i64 nblk = (nB + B - 1) / B;
    const size_t fsz = sizeof(float);
    float *G_r = malloc(fsz * D * B), *G_i = malloc(fsz * D * B);
    float *H_r = malloc(fsz * 2 * M * L1 * B), *H_i = malloc(fsz * 2 * M * L1 * B);
    float *U_r = malloc(fsz * 2 * L1 * N * B), *U_i = malloc(fsz * 2 * L1 * N * B);
    float *PQ = malloc(fsz * 4 * L1 * B);
    i64 *cand_j = malloc(sizeof(i64) * 2 * nB), *cand_g = malloc(sizeof(i64) * 2 * nB);
    double *bq = malloc(sizeof(double) * qb * 3 * B), *cq = malloc(sizeof(double) * qb * 3 * B);
    double *W = malloc(sizeof(double) * A->qa * qb * B), *fbest = malloc(sizeof(double) * nB);
    double *wq = malloc(sizeof(double) * A->C * qb * B);
    i64 *t_start = malloc(sizeof(i64) * (2 * M * L1 + 1));
    int status = 0;
    if (!G_r || !G_i || !H_r || !H_i || !U_r || !U_i || !PQ || !cand_j || !cand_g || !bq || !cq || !W || !fbest || !wq || !t_start) {
        status = -1;
        goto done;
    }
    /* rows of H: the coupling entries come sorted by their row t, entries t_start[t] .. t_start[t+1]-1 */
    for (i64 t = 0, d = 0; t <= 2 * M * L1; t++) {
        while (d < D && A->g_t[d] < t) d++;
        t_start[t] = d;
    }
    float best_v[2 * B], best_i[2 * B];
    double f[B], fn[B], gH[18 * B], gH2[18 * B], R[9 * B], Rn[9 * B], step[3 * B], damp[B];
    for (i64 i = i0; i < i1; i++) {
        const i64 na = A->cnt_a[i];
        const double *a = A->pa + i * A->qa * 3;
        i64 nc = 0;
        for (i64 blk = 0; blk < nblk; blk++) {
            grid_block(A, i, blk, G_r, G_i, H_r, H_i, U_r, U_i, PQ, PQ + L1 * B, PQ + 2 * L1 * B, PQ + 3 * L1 * B,
                       best_v, best_i, t_start);
            for (int k = 0; k < B; k++) {
                const i64 j = blk * B + k;
                if (j >= nB) break;
                for (i64 par = 0; par < A->parities; par++) {
                    const i64 gi = (i64)best_i[par * B + k];
                    cand_j[nc] = j;
                    cand_g[nc] = par == 0 ? gi : -1 - gi;
                    nc++;
                }
            }
        }
        for (i64 j = 0; j < nB; j++) fbest[j] = -1e300;
        for (i64 c0 = 0; c0 < nc; c0 += B) {
            i64 nq = 0;
            for (int k = 0; k < B; k++) {
                const i64 c = c0 + k < nc ? c0 + k : nc - 1;
                if (A->cnt_b[cand_j[c]] > nq) nq = A->cnt_b[cand_j[c]];
            }
            for (int k = 0; k < B; k++) {
                const i64 c = c0 + k < nc ? c0 + k : nc - 1;
                const i64 j = cand_j[c];
                i64 gi = cand_g[c];
                double sg = 1.0;
                if (gi < 0) { gi = -1 - gi; sg = -1.0; }
                for (int t = 0; t < 9; t++) R[t * B + k] = sg * A->rgrid[gi * 9 + t];
                damp[k] = 1.0;
                const double *pbj = A->pb + j * qb * 3, *wbj = A->wb + j * qb * A->C;
                for (i64 q = 0; q < nq; q++) {
                    for (int x = 0; x < 3; x++) bq[(q * 3 + x) * B + k] = pbj[q * 3 + x];
                    for (i64 ch = 0; ch < A->C; ch++) wq[(ch * nq + q) * B + k] = wbj[q * A->C + ch];
                }
            }
            /* weights W[p][q] = sum over channels of w_a[p] w_b[q], lane-parallel */
            for (i64 p = 0; p < na; p++) {
                const double *wap = A->wa + (i * A->qa + p) * A->C;
                for (i64 q = 0; q < nq; q++) {
                    double w[B] = {0};
                    for (i64 ch = 0; ch < A->C; ch++) {
                        const double *wb = wq + (ch * nq + q) * B;
                        for (int k = 0; k < B; k++) w[k] += wap[ch] * wb[k];
                    }
                    for (int k = 0; k < B; k++) W[(p * nq + q) * B + k] = w[k];
                }
            }
            eval_lanes(a, na, bq, nq, W, A->kap, R, cq, A->n_iter > 0, f, gH);
            for (i64 it = 0; it < A->n_iter; it++) {
                newton_lanes(gH, damp, step);
                rotate_lanes(step, R, Rn);
                eval_lanes(a, na, bq, nq, W, A->kap, Rn, cq, it < A->n_iter - 1, fn, gH2);
                for (int k = 0; k < B; k++) {
                    if (fn[k] >= f[k] - 1e-13 * fabs(f[k])) {
                        f[k] = fn[k];
                        for (int t = 0; t < 9; t++) { R[t * B + k] = Rn[t * B + k]; gH[t * B + k] = gH2[t * B + k]; }
                    } else {
                        damp[k] *= 0.25;
                    }
                }
            }
            for (int k = 0; k < B; k++) {
                const i64 c = c0 + k;
                if (c < nc && f[k] > fbest[cand_j[c]]) fbest[cand_j[c]] = f[k];
            }
        }
        double *row = out + (i - i0) * nB;
        for (i64 j = 0; j < nB; j++) {
            const double d2 = A->self_a[i] + A->self_b[j] - 2.0 * fbest[j];
            row[j] = d2 > 0 ? sqrt(d2) : 0.0;
        }
    }
done:
    free(G_r); free(G_i); free(H_r); free(H_i); free(U_r); free(U_i); free(PQ);
    free(cand_j); free(cand_g); free(bq); free(cq); free(W); free(fbest); free(wq); free(t_start);
    return status;
}
