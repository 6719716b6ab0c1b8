// ms_gpt's CPU kernels as MindSpore `Custom` "aot" operators: Linear (OpenBLAS's sgemm from the
// scipy-openblas32 wheel), clipping + AdamW, LayerNorm, GELU, masked self-attention and the LM
// cross-entropy, each with its backward. Every entry point has MindSpore's aot signature:
//   int f(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// params holds the inputs, then the outputs; all float32, row-major, contiguous.
#include <cblas.h>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace {
inline int64_t rows_of(int ndim, const int64_t *shape) {  // product of all but the last axis
  int64_t r = 1;
  for (int i = 0; i + 1 < ndim; ++i) r *= shape[i];
  return r;
}

inline int64_t elements_of(int ndim, const int64_t *shape) {
  return ndim == 0 ? 1 : rows_of(ndim, shape) * shape[ndim - 1];
}

// A Custom op's tensors arrive as params[]: its inputs, then its outputs.
inline const float *input_at(void **params, int i) { return static_cast<const float *>(params[i]); }
inline float *output_at(void **params, int i) { return static_cast<float *>(params[i]); }

int g_threads = 1;  // set by SetThreads (Python: ms_gpt.kernels.library)

// A small pool of sleeping worker threads: parallel_for(n, fn) runs fn(begin, end) on up to g_threads
// contiguous parts of [0, n), the calling thread taking the first. Workers wait on a condition variable,
// never spinning (OpenBLAS's own threads busy-wait between calls and took the CPU from MindSpore's
// kernels: a small GPT's step was 1.5-1.75x slower with OpenBLAS at 2 threads than at 1 on 2 cores).
// Nested or concurrent calls (MindSpore may run two kernels at once) run serially instead of waiting.
class Pool {
 public:
  ~Pool() { stop(); }

  void parallel_for(int64_t n, int64_t min_per_part, const std::function<void(int64_t, int64_t)> &fn) {
    int parts = static_cast<int>(std::min<int64_t>(g_threads, n / std::max<int64_t>(min_per_part, 1)));
    if (parts < 2 || in_pool_ || !busy_.try_lock()) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> own(busy_, std::adopt_lock);
    ensure_workers(g_threads - 1);
    const int64_t chunk = (n + parts - 1) / parts;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      n_ = n;
      chunk_ = chunk;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    cv_.notify_all();
    in_pool_ = true;
    fn(0, std::min(chunk, n));
    in_pool_ = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void ensure_workers(int count) {
    if (static_cast<int>(workers_.size()) == count) return;
    stop();
    stopping_ = false;
    for (int w = 1; w <= count; ++w) workers_.emplace_back([this, w] { loop(w); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto &t : workers_) t.join();
    workers_.clear();
  }

  void loop(int part) {
    int64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t, int64_t)> *job;
      int64_t begin, end;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stopping_) return;
        if (part >= parts_) continue;
        job = job_;
        begin = part * chunk_;
        end = std::min(n_, begin + chunk_);
      }
      in_pool_ = true;
      if (begin < end) (*job)(begin, end);
      in_pool_ = false;
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_, mu_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)> *job_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, generation_ = 0;
  int parts_ = 0, pending_ = 0;
  bool stopping_ = false;
  static thread_local bool in_pool_;
};
thread_local bool Pool::in_pool_ = false;

Pool &pool() {  // never destroyed: its workers sleep until the process ends (no join at exit)
  static Pool *instance = new Pool();
  return *instance;
}

// C[i, :n] = alpha A[i, :k] @ B[:n, :k]^T + beta C[i, :n] for the m <= 4 rows of decoding: one OpenBLAS sgemv
// per row (with one row, sgemm ran a matrix-vector product at about a third of sgemv's rate here).
void rows_times_transposed(const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,
                           int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  for (int64_t i = 0; i < m; ++i)
    scipy_cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, B, ldb, A + i * lda, 1, beta, C + i * ldc, 1);
}

// Row-major C[M, N] = alpha op(A) op(B) + beta C with OpenBLAS at one thread; products of at least
// ~16M multiply-adds (~0.3 ms) are split by rows of C over the pool.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M < 64) {  // few rows (decoding: one per sequence) - a matrix-vector product bound by reading B: split N
    const int64_t min_cols = std::max<int64_t>(64, ((int64_t(1) << 17) / std::max<int64_t>(M * K, 1)));
    pool().parallel_for(N, min_cols, [&](int64_t n0, int64_t n1) {
      const float *b = tb == CblasNoTrans ? B + n0 : B + n0 * ldb;
      if (M <= 4 && ta == CblasNoTrans && tb == CblasTrans) {
        rows_times_transposed(A, lda, b, ldb, C + n0, ldc, M, n1 - n0, K, alpha, beta);
        return;
      }
      scipy_cblas_sgemm(CblasRowMajor, ta, tb, M, n1 - n0, K, alpha, A, lda, b, ldb, beta, C + n0, ldc);
    });
    return;
  }
  const int64_t min_rows = std::max<int64_t>(16, ((int64_t(1) << 24) / std::max<int64_t>(N * K, 1)));
  pool().parallel_for(M, min_rows, [&](int64_t m0, int64_t m1) {
    const float *a = ta == CblasNoTrans ? A + m0 * lda : A + m0;
    scipy_cblas_sgemm(CblasRowMajor, ta, tb, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
  });
}
// out[j] = sum over rows i of a[i, j] (a: [m, n] row-major), columns split over the pool.
void column_sums(const float *a, int64_t m, int64_t n, float *out) {
  pool().parallel_for(n, std::max<int64_t>(8, (int64_t(1) << 16) / std::max<int64_t>(m, 1)), [&](int64_t c0, int64_t c1) {
    std::memset(out + c0, 0, sizeof(float) * (c1 - c0));
    for (int64_t i = 0; i < m; ++i) {
      const float *row = a + i * n;
      for (int64_t j = c0; j < c1; ++j) out[j] += row[j];
    }
  });
}

// y [m, n] = x [m, k] @ w [n, k]^T + b [n]: the bias copied into every row, then one sgemm adding to it.
void affine(const float *x, const float *w, const float *b, float *y, int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i) std::memcpy(y + i * n, b, sizeof(float) * n);
  gemm(CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 1.0f, y, n);
}
}  // namespace

extern "C" int SetThreads(int n) {
  g_threads = n < 1 ? 1 : n;
  return g_threads;
}

extern "C" {

// y [.., n] = x [.., k] @ w[n, k]^T + b[n]
int LinearForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *b = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  const int64_t m = rows_of(ndims[0], shapes[0]), k = shapes[0][ndims[0] - 1], n = shapes[1][0];
  affine(x, w, b, y, m, n, k);
  return 0;
}

// y [.., n] = x [.., k] @ w[n, k]^T  (no bias)
int MatMulNT(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t m = rows_of(ndims[0], shapes[0]), k = shapes[0][ndims[0] - 1], n = shapes[1][0];
  gemm(CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
  return 0;
}

// The backward of y = x w^T (+ b): inputs x [.., k], w [n, k], dy [.., n];
// outputs dx [.., k] = dy @ w, dw [n, k] = dy^T @ x, and (LinearBackward only) db [n] = sum of dy's rows.
// (Two entry points: MindSpore caches a Custom kernel's signature by its function name.)
static int linear_backward(int nparam, void **params, int *ndims, int64_t **shapes) {
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  float *dw = static_cast<float *>(params[4]);
  const int64_t m = rows_of(ndims[0], shapes[0]), k = shapes[0][ndims[0] - 1], n = shapes[1][0];
  gemm(CblasNoTrans, CblasNoTrans, m, k, n, 1.0f, dy, n, w, k, 0.0f, dx, k);
  gemm(CblasTrans, CblasNoTrans, n, k, m, 1.0f, dy, n, x, k, 0.0f, dw, k);
  if (nparam == 6) {
    float *db = static_cast<float *>(params[5]);
    column_sums(dy, m, n, db);
  }
  return 0;
}

int LinearBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return nparam == 6 ? linear_backward(nparam, params, ndims, shapes) : 1;
}

int MatMulNTBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return nparam == 5 ? linear_backward(nparam, params, ndims, shapes) : 1;
}

}  // extern "C"

// ---------------------------------------------------------------------------------------------------
// One AdamW step over every parameter, with clipping by the global gradient norm, in one kernel.
// Inputs: lr [1] f32, step [1] i32 (steps done before this one), hyper [5] f32 = (beta1, beta2, eps,
// max_norm (<= 0: no clipping), bias_correction (1: PyTorch's AdamW; 0: MindSpore's AdamWeightDecay,
// whose moments are not bias-corrected)), decay [N] f32 (each parameter's weight decay), then N
// parameters, N first moments, N second moments, N gradients. Output: the global norm [1] f32 of the
// gradients before clipping.
// The parameters and moments are updated IN PLACE (they are MindSpore Parameters, which the CPU
// backend passes to the kernel as their own buffers). Decoupled weight decay p <- p (1 - lr wd); clip
// factor max_norm / (norm + 1e-6) when norm > max_norm, as PyTorch's clip_grad_norm_.
extern "C" int AdamWClipStep(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *,
                             void *) {
  if (nparam < 5 || (nparam - 5) % 4 != 0) return 1;
  const int n = (nparam - 5) / 4;
  const float lr = *static_cast<const float *>(params[0]);
  const int32_t done = *static_cast<const int32_t *>(params[1]);
  const float *hyper = static_cast<const float *>(params[2]);
  const float *decay = static_cast<const float *>(params[3]);
  const float b1 = hyper[0], b2 = hyper[1], eps = hyper[2], max_norm = hyper[3];
  const bool corrected = hyper[4] != 0.0f;
  float *norm_out = static_cast<float *>(params[nparam - 1]);
  auto size_of = [&](int i) { return elements_of(ndims[i], shapes[i]); };
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    const float *g = static_cast<const float *>(params[4 + 3 * n + i]);
    const int64_t size = size_of(4 + 3 * n + i);
    double parts[64] = {0.0};
    const int64_t chunk = std::max<int64_t>(int64_t(1) << 16, (size + 63) / 64);
    pool().parallel_for((size + chunk - 1) / chunk, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double acc = 0.0;
        for (int64_t j = c * chunk; j < std::min(size, (c + 1) * chunk); ++j) acc += static_cast<double>(g[j]) * g[j];
        parts[c] = acc;
      }
    });
    for (double part : parts) total += part;
  }
  const float norm = static_cast<float>(std::sqrt(total));
  *norm_out = norm;
  const float clip = (max_norm > 0.0f && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
  const double t = static_cast<double>(done) + 1.0;
  const float bc1 = corrected ? static_cast<float>(1.0 - std::pow(static_cast<double>(b1), t)) : 1.0f;
  const float bc2_sqrt = corrected ? static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), t))) : 1.0f;
  const float step_size = lr / bc1;
  auto update = [=](float *p, float *m, float *v, const float *g, int64_t size, float keep) {
    for (int64_t j = 0; j < size; ++j) {
      const float gj = g[j] * clip;
      const float mj = b1 * m[j] + (1.0f - b1) * gj;
      const float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
      m[j] = mj;
      v[j] = vj;
      p[j] = p[j] * keep - step_size * mj / (std::sqrt(vj) / bc2_sqrt + eps);
    }
  };
  for (int i = 0; i < n; ++i) {
    float *p = static_cast<float *>(params[4 + i]);
    float *m = static_cast<float *>(params[4 + n + i]);
    float *v = static_cast<float *>(params[4 + 2 * n + i]);
    const float *g = static_cast<const float *>(params[4 + 3 * n + i]);
    const int64_t size = size_of(4 + i);
    const float keep = 1.0f - lr * decay[i];
    pool().parallel_for(size, int64_t(1) << 16, [&](int64_t j0, int64_t j1) {
      update(p + j0, m + j0, v + j0, g + j0, j1 - j0, keep);
    });
  }
  return 0;
}

namespace {
// y = LayerNorm(x) over the last axis for rows [r0, r1) of x [.., d] (y may be x); each row's mean and 1/std
// go to mean[i] / rstd[i] when those are given.
void layer_norm_rows(const float *x, const float *w, const float *b, float eps, float *y, int64_t r0, int64_t r1,
                     int64_t d, float *mean = nullptr, float *rstd = nullptr) {
  for (int64_t i = r0; i < r1; ++i) {
    const float *xr = x + i * d;
    float *yr = y + i * d;
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) s += xr[j];
    const float mu = s / d;
    float q = 0.0f;
    for (int64_t j = 0; j < d; ++j) q += (xr[j] - mu) * (xr[j] - mu);
    const float r = 1.0f / std::sqrt(q / d + eps);
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mu) * r * w[j] + b[j];
    if (mean != nullptr) mean[i] = mu;
    if (rstd != nullptr) rstd[i] = r;
  }
}
}  // namespace

// ---------------------------------------------------------------------------------------------------
// LayerNorm over the last axis. Forward: x [.., d], w [d], b [d] -> y [.., d], mean [rows], rstd [rows]
// (attribute-free: eps comes as a [1] input). Backward: x, w, mean, rstd, dy -> dx, dw, db.
extern "C" int LayerNormForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *,
                                void *) {
  if (nparam != 7) return 1;
  const float *x = input_at(params, 0), *w = input_at(params, 1), *b = input_at(params, 2);
  const float eps = *input_at(params, 3);
  float *y = output_at(params, 4), *mean = output_at(params, 5), *rstd = output_at(params, 6);
  const int64_t m = rows_of(ndims[0], shapes[0]), d = shapes[0][ndims[0] - 1];
  pool().parallel_for(m, std::max<int64_t>(1, 8192 / d), [&](int64_t r0, int64_t r1) {
    layer_norm_rows(x, w, b, eps, y, r0, r1, d, mean, rstd);
  });
  return 0;
}

extern "C" int LayerNormBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *,
                                 void *) {
  if (nparam != 8) return 1;
  const float *x = input_at(params, 0), *w = input_at(params, 1), *mean = input_at(params, 2);
  const float *rstd = input_at(params, 3), *dy = input_at(params, 4);
  float *dx = output_at(params, 5), *dw = output_at(params, 6), *db = output_at(params, 7);
  const int64_t m = rows_of(ndims[0], shapes[0]), d = shapes[0][ndims[0] - 1];
  pool().parallel_for(m, std::max<int64_t>(1, 8192 / d), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const float *xr = x + i * d, *dyr = dy + i * d;
      float *dxr = dx + i * d;
      const float mu = mean[i], r = rstd[i];
      float sum_g = 0.0f, sum_gx = 0.0f;  // means of g = dy * w and of g * xhat
      for (int64_t j = 0; j < d; ++j) {
        const float g = dyr[j] * w[j];
        sum_g += g;
        sum_gx += g * (xr[j] - mu) * r;
      }
      sum_g /= d;
      sum_gx /= d;
      for (int64_t j = 0; j < d; ++j) dxr[j] = r * (dyr[j] * w[j] - sum_g - (xr[j] - mu) * r * sum_gx);
    }
  });
  pool().parallel_for(d, 8, [&](int64_t c0, int64_t c1) {  // dw = sum of dy * xhat, db = sum of dy, by column
    std::memset(dw + c0, 0, sizeof(float) * (c1 - c0));
    std::memset(db + c0, 0, sizeof(float) * (c1 - c0));
    for (int64_t i = 0; i < m; ++i) {
      const float *xr = x + i * d, *dyr = dy + i * d;
      const float mu = mean[i], r = rstd[i];
      for (int64_t j = c0; j < c1; ++j) {
        dw[j] += dyr[j] * (xr[j] - mu) * r;
        db[j] += dyr[j];
      }
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Exact GELU, x * Phi(x). Forward: x -> y. Backward: x, dy -> dx.
extern "C" int GeluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t size = elements_of(ndims[0], shapes[0]);
  pool().parallel_for(size, 16384, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) y[j] = 0.5f * x[j] * (1.0f + std::erf(x[j] * 0.70710678118654752f));
  });
  return 0;
}

extern "C" int GeluBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *,
                            void *) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t size = elements_of(ndims[0], shapes[0]);
  pool().parallel_for(size, 16384, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const float cdf = 0.5f * (1.0f + std::erf(x[j] * 0.70710678118654752f));
      const float pdf = 0.39894228040143268f * std::exp(-0.5f * x[j] * x[j]);
      dx[j] = dy[j] * (cdf + x[j] * pdf);
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Masked multi-head self-attention without the output projection, forward and backward in one kernel
// each (the training path: no KV cache). Layouts: x [b, l, d]; wq, wk, wv [d, d]; bq, bk, bv [d];
// mask [b, l, l] bool (true = may not attend); keep [b, h, l, l] f32 (dropout multipliers on the
// attention weights; only in the *Dropout variants). Forward outputs: context [b, l, d] (heads merged),
// Q, K, V [b, l, d] (projections, heads merged), P [b, h, l, l] (softmax weights before dropout).
// Head i of a merged [b, l, d] tensor is the column block [i*dk, (i+1)*dk): each per-(batch, head)
// product is an sgemm on a strided sub-matrix, so no transposes are needed.
namespace {
constexpr float kMasked = -1e9f;

int attention_forward(void **params, int64_t **shapes, bool dropout) {
  const float *x = static_cast<const float *>(params[0]);
  const float *w[3] = {static_cast<const float *>(params[1]), static_cast<const float *>(params[2]),
                       static_cast<const float *>(params[3])};
  const float *bias[3] = {static_cast<const float *>(params[4]), static_cast<const float *>(params[5]),
                          static_cast<const float *>(params[6])};
  const bool *mask = static_cast<const bool *>(params[7]);
  const float *keep = dropout ? static_cast<const float *>(params[8]) : nullptr;
  const int o = dropout ? 9 : 8;  // first output
  float *ctx = static_cast<float *>(params[o]);
  float *qkv[3] = {static_cast<float *>(params[o + 1]), static_cast<float *>(params[o + 2]),
                   static_cast<float *>(params[o + 3])};
  float *P = static_cast<float *>(params[o + 4]);
  const int64_t b = shapes[0][0], l = shapes[0][1], d = shapes[0][2], h = shapes[o + 4][1], dk = d / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int j = 0; j < 3; ++j) affine(x, w[j], bias[j], qkv[j], b * l, d, d);
  pool().parallel_for(b * h, 1, [&](int64_t pair0, int64_t pair1) {
    std::vector<float> dropped(dropout ? l * l : 0);
    for (int64_t pair = pair0; pair < pair1; ++pair) {
      const int64_t bi = pair / h, hi = pair % h;
      const float *q = qkv[0] + bi * l * d + hi * dk, *k = qkv[1] + bi * l * d + hi * dk;
      const float *v = qkv[2] + bi * l * d + hi * dk;
      float *p = P + (bi * h + hi) * l * l;
      gemm(CblasNoTrans, CblasTrans, l, l, dk, scale, q, d, k, d, 0.0f, p, l);
      const bool *mr = mask + bi * l * l;
      for (int64_t i = 0; i < l; ++i) {
        float *row = p + i * l;
        float mx = -INFINITY;
        for (int64_t j = 0; j < l; ++j) {
          if (mr[i * l + j]) row[j] = kMasked;
          mx = row[j] > mx ? row[j] : mx;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < l; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < l; ++j) row[j] *= inv;
      }
      const float *weights = p;
      if (dropout) {
        const float *kp = keep + (bi * h + hi) * l * l;
        for (int64_t j = 0; j < l * l; ++j) dropped[j] = p[j] * kp[j];
        weights = dropped.data();
      }
      gemm(CblasNoTrans, CblasNoTrans, l, dk, l, 1.0f, weights, l, v, d, 0.0f,
                        ctx + bi * l * d + hi * dk, d);
    }
  });
  return 0;
}

// Inputs: the forward's inputs, its outputs Q, K, V, P, then its outputs' gradients (dcontext, dQ, dK,
// dV, dP). Outputs: dx, dwq, dwk, dwv, dbq, dbk, dbv.
int attention_backward(void **params, int64_t **shapes, bool dropout) {
  const float *x = static_cast<const float *>(params[0]);
  const float *w[3] = {static_cast<const float *>(params[1]), static_cast<const float *>(params[2]),
                       static_cast<const float *>(params[3])};
  const float *keep = dropout ? static_cast<const float *>(params[8]) : nullptr;
  const int f = dropout ? 9 : 8;  // the forward's outputs Q, K, V, P
  const float *Q = static_cast<const float *>(params[f]), *K = static_cast<const float *>(params[f + 1]);
  const float *V = static_cast<const float *>(params[f + 2]), *P = static_cast<const float *>(params[f + 3]);
  const int g = f + 4;  // first incoming gradient
  const float *dctx = static_cast<const float *>(params[g]);
  const float *dqkv_in[3] = {static_cast<const float *>(params[g + 1]), static_cast<const float *>(params[g + 2]),
                             static_cast<const float *>(params[g + 3])};
  const float *dP_in = static_cast<const float *>(params[g + 4]);
  const int o = g + 5;  // first output
  float *dx = static_cast<float *>(params[o]);
  float *dw[3] = {static_cast<float *>(params[o + 1]), static_cast<float *>(params[o + 2]),
                  static_cast<float *>(params[o + 3])};
  float *db[3] = {static_cast<float *>(params[o + 4]), static_cast<float *>(params[o + 5]),
                  static_cast<float *>(params[o + 6])};
  const int64_t b = shapes[0][0], l = shapes[0][1], d = shapes[0][2], h = shapes[f + 3][1], dk = d / h;
  const int64_t rows = b * l;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  std::vector<float> dqkv(3 * rows * d);
  for (int j = 0; j < 3; ++j) std::memcpy(dqkv.data() + j * rows * d, dqkv_in[j], sizeof(float) * rows * d);
  float *dQ = dqkv.data(), *dK = dQ + rows * d, *dV = dK + rows * d;
  // each (batch, head) pair writes only its own column block of dQ, dK, dV: the pairs run in parallel
  pool().parallel_for(b * h, 1, [&](int64_t pair0, int64_t pair1) {
    std::vector<float> dp(l * l), pd(dropout ? l * l : 0);
    for (int64_t pair = pair0; pair < pair1; ++pair) {
      const int64_t bi = pair / h, hi = pair % h;
      const int64_t off = bi * l * d + hi * dk;
      const float *kp = dropout ? keep + (bi * h + hi) * l * l : nullptr;
      const float *pbh = P + (bi * h + hi) * l * l;
      const float *weights = pbh;
      if (dropout) {
        for (int64_t j = 0; j < l * l; ++j) pd[j] = pbh[j] * kp[j];
        weights = pd.data();
      }
      // dV += weights^T dctx ; d(weights) = dctx V^T
      gemm(CblasTrans, CblasNoTrans, l, dk, l, 1.0f, weights, l, dctx + off, d, 1.0f,
                        dV + off, d);
      gemm(CblasNoTrans, CblasTrans, l, l, dk, 1.0f, dctx + off, d, V + off, d, 0.0f,
                        dp.data(), l);
      const float *dpin = dP_in + (bi * h + hi) * l * l;
      for (int64_t i = 0; i < l; ++i) {  // dS = P * (dP - rowsum(dP * P)), dP = d(weights) * keep + dP_in
        float *drow = dp.data() + i * l;
        const float *prow = pbh + i * l;
        float dot = 0.0f;
        for (int64_t j = 0; j < l; ++j) {
          drow[j] = (kp ? drow[j] * kp[i * l + j] : drow[j]) + dpin[i * l + j];
          dot += drow[j] * prow[j];
        }
        for (int64_t j = 0; j < l; ++j) drow[j] = prow[j] * (drow[j] - dot);
      }
      // dQ += scale dS K ; dK += scale dS^T Q
      gemm(CblasNoTrans, CblasNoTrans, l, dk, l, scale, dp.data(), l, K + off, d, 1.0f,
                        dQ + off, d);
      gemm(CblasTrans, CblasNoTrans, l, dk, l, scale, dp.data(), l, Q + off, d, 1.0f,
                        dK + off, d);
    }
  });
  // the projections' gradients: dx = sum_j dP_j W_j ; dW_j = dP_j^T x ; db_j = column sums of dP_j
  for (int j = 0; j < 3; ++j) {
    const float *dj = dqkv.data() + j * rows * d;
    gemm(CblasNoTrans, CblasNoTrans, rows, d, d, 1.0f, dj, d, w[j], d,
                      j == 0 ? 0.0f : 1.0f, dx, d);
    gemm(CblasTrans, CblasNoTrans, d, d, rows, 1.0f, dj, d, x, d, 0.0f, dw[j], d);
    column_sums(dj, rows, d, db[j]);
  }
  return 0;
}
}  // namespace

extern "C" {
int AttentionForward(int nparam, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return nparam == 13 ? attention_forward(params, shapes, false) : 1;
}
int AttentionForwardDropout(int nparam, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return nparam == 14 ? attention_forward(params, shapes, true) : 1;
}
int AttentionBackward(int nparam, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return nparam == 24 ? attention_backward(params, shapes, false) : 1;
}
int AttentionBackwardDropout(int nparam, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return nparam == 25 ? attention_backward(params, shapes, true) : 1;
}
}  // extern "C"

// ---------------------------------------------------------------------------------------------------
// Mean cross-entropy of logits [m, v] (f32) against labels [m] (int32 or int64), rows whose label is
// -100 (ms_gpt.data.batching.IGNORE) skipped. Forward outputs: loss [1], lse [m] (each row's
// log-sum-exp), count [1] (rows scored). Backward: logits, labels, lse, count, dloss [1] -> dlogits
// [m, v] = (softmax - onehot) * dloss / count on scored rows, 0 elsewhere. A label outside [0, v) that
// is not -100 is an error (non-zero return).
namespace {
constexpr int64_t kIgnore = -100;

inline int64_t label_at(const void *labels, bool wide, int64_t i) {
  return wide ? static_cast<const int64_t *>(labels)[i] : static_cast<const int32_t *>(labels)[i];
}
}  // namespace

extern "C" int CrossEntropyForward(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                   void *) {
  if (nparam != 5) return 1;
  const float *logits = static_cast<const float *>(params[0]);
  const bool wide = std::strcmp(dtypes[1], "int64") == 0;
  float *loss = static_cast<float *>(params[2]);
  float *lse = static_cast<float *>(params[3]);
  float *count = static_cast<float *>(params[4]);
  const int64_t m = shapes[0][0], v = shapes[0][1];
  std::vector<double> part_loss(64, 0.0), part_count(64, 0.0);
  std::vector<int> bad(64, 0);
  const int64_t chunk = std::max<int64_t>(1, (m + 63) / 64);
  pool().parallel_for((m + chunk - 1) / chunk, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t i = c * chunk; i < std::min(m, (c + 1) * chunk); ++i) {
        const float *row = logits + i * v;
        float mx = -INFINITY;
        for (int64_t j = 0; j < v; ++j) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < v; ++j) sum += std::exp(row[j] - mx);
        lse[i] = mx + static_cast<float>(std::log(sum));
        const int64_t label = label_at(params[1], wide, i);
        if (label == kIgnore) continue;
        if (label < 0 || label >= v) {
          bad[c] = 1;
          continue;
        }
        part_loss[c] += lse[i] - row[label];
        part_count[c] += 1.0;
      }
    }
  });
  double total = 0.0, n = 0.0;
  for (int c = 0; c < 64; ++c) {
    if (bad[c]) return 2;
    total += part_loss[c];
    n += part_count[c];
  }
  *loss = static_cast<float>(total / n);  // 0 / 0 = NaN when every label is ignored, as ops.cross_entropy
  *count = static_cast<float>(n);
  return 0;
}

extern "C" int CrossEntropyBackward(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                    void *) {
  if (nparam != 6) return 1;
  const float *logits = static_cast<const float *>(params[0]);
  const bool wide = std::strcmp(dtypes[1], "int64") == 0;
  const float *lse = static_cast<const float *>(params[2]);
  const float count = *static_cast<const float *>(params[3]);
  const float dloss = *static_cast<const float *>(params[4]);
  float *dlogits = static_cast<float *>(params[5]);
  const int64_t m = shapes[0][0], v = shapes[0][1];
  const float scale = dloss / count;
  pool().parallel_for(m, std::max<int64_t>(1, 65536 / std::max<int64_t>(v, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float *out = dlogits + i * v;
      const int64_t label = label_at(params[1], wide, i);
      if (label == kIgnore || label < 0 || label >= v) {
        std::memset(out, 0, sizeof(float) * v);
        continue;
      }
      const float *row = logits + i * v;
      for (int64_t j = 0; j < v; ++j) out[j] = std::exp(row[j] - lse[i]) * scale;
      out[label] -= scale;
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// One decoder layer of a cached decoding step (inference: no dropout) for n new tokens a row (1 when
// decoding, a chunk of a prompt), as one kernel. Inputs:
//   0 x [b, n, d]; 1-2 ln1 w, b [d]; 3-8 wq, bq, wk, bk, wv, bv; 9-10 wo [d, d], bo [d];
//   11-12 ln2 w, b [d]; 13-14 w1 [f, d], b1 [f]; 15-16 w2 [d, f], b2 [d];
//   17 k_buf, 18 v_buf [b, h, T, dk] (written in place: new token i's key and value go to its slot);
//   19 mask [b, n, T] bool (true = may not attend); 20 place [T, n] bool (new token i goes to the slot whose
//   row has column i set: consecutive slots from the first); 21 hyper [3]: eps, pre-LN (1/0),
//   activation (0 exact GELU, 1 tanh GELU, 2 ReLU).
// Output: 22 y [b, n, d]. Post-LN: y = LN2(x1 + ffn(x1)), x1 = LN1(x + attn(x)); pre-LN:
// y = x1 + ffn(LN2(x1)), x1 = x + attn(LN1(x)). Masked slots are skipped, so the attention costs the
// filled context only. The layer's threads work as one team through all its phases (see SpinBarrier).
namespace {
void activate(float *x, int64_t size, int kind) {
  for (int64_t j = 0; j < size; ++j) {
    const float v = x[j];
    if (kind == 0) {
      x[j] = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    } else if (kind == 1) {
      x[j] = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    } else {
      x[j] = v > 0.0f ? v : 0.0f;
    }
  }
}

// A spinning barrier for the threads of one parallel_for that all take part until its end (the decoding
// layer's phases): between phases that each take tens of microseconds, waking a sleeping worker costs more
// than the phase, so the team spins (both threads are inside the kernel anyway).
class SpinBarrier {
 public:
  explicit SpinBarrier(int count) : count_(count) {}
  void wait() {
    if (count_ < 2) return;
    const int gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == gen) __builtin_ia32_pause();
  }

 private:
  const int count_;
  std::atomic<int> arrived_{0}, generation_{0};
};

// y[:, n0:n1] = x [m, k] @ w[n0:n1, :]^T + b[n0:n1] on the calling thread (y has row stride n): one OpenBLAS
// sgemv per row for the few rows of decoding (rows_times_transposed), an sgemm otherwise.
void affine_columns(const float *x, const float *w, const float *b, float *y, int64_t m, int64_t n, int64_t k,
                    int64_t n0, int64_t n1) {
  if (n1 <= n0) return;
  for (int64_t i = 0; i < m; ++i) std::memcpy(y + i * n + n0, b + n0, sizeof(float) * (n1 - n0));
  if (m <= 4) {
    rows_times_transposed(x, k, w + n0 * k, k, y + n0, n, m, n1 - n0, k, 1.0f, 1.0f);
  } else {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n1 - n0, k, 1.0f, x, k, w + n0 * k, k, 1.0f,
                      y + n0, n);
  }
}

inline void part_of(int64_t n, int part, int parts, int64_t *begin, int64_t *end) {
  *begin = n * part / parts;
  *end = n * (part + 1) / parts;
}

// One new token's attention in one head over the cache (its own key and value already written): from q over
// the slots `mask` leaves open (masked ones are skipped: the cost is the filled context).
void attend_cached(const float *q, const float *kb, const float *vb, const bool *mask, int64_t T, int64_t dk,
                   float scale, float *p, float *ctx) {
  float mx = -INFINITY;
  for (int64_t t = 0; t < T; ++t) {
    if (mask[t]) continue;
    const float *kr = kb + t * dk;
    float s = 0.0f;
    for (int64_t j = 0; j < dk; ++j) s += q[j] * kr[j];
    p[t] = s * scale;
    mx = p[t] > mx ? p[t] : mx;
  }
  std::memset(ctx, 0, sizeof(float) * dk);
  if (mx == -INFINITY) {  // nothing to attend to: MindSpore's masked softmax spreads evenly over every slot
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < dk; ++j) ctx[j] += vb[t * dk + j] / T;
    return;
  }
  float sum = 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    if (mask[t]) continue;
    p[t] = std::exp(p[t] - mx);
    sum += p[t];
  }
  const float inv = 1.0f / sum;
  for (int64_t t = 0; t < T; ++t) {
    if (mask[t]) continue;
    const float wt = p[t] * inv;
    const float *vr = vb + t * dk;
    for (int64_t j = 0; j < dk; ++j) ctx[j] += wt * vr[j];
  }
}
}  // namespace

extern "C" int DecodeLayer(int nparam, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 23) return 1;
  const float *x = input_at(params, 0);
  const float *ln1w = input_at(params, 1), *ln1b = input_at(params, 2);
  const float *wq = input_at(params, 3), *bq = input_at(params, 4), *wk = input_at(params, 5);
  const float *bk = input_at(params, 6), *wv = input_at(params, 7), *bv = input_at(params, 8);
  const float *wo = input_at(params, 9), *bo = input_at(params, 10);
  const float *ln2w = input_at(params, 11), *ln2b = input_at(params, 12);
  const float *w1 = input_at(params, 13), *b1 = input_at(params, 14);
  const float *w2 = input_at(params, 15), *b2 = input_at(params, 16);
  float *kbuf = static_cast<float *>(params[17]), *vbuf = static_cast<float *>(params[18]);
  const bool *mask = static_cast<const bool *>(params[19]);
  const bool *place = static_cast<const bool *>(params[20]);
  const float *hyper = input_at(params, 21);
  float *y = output_at(params, 22);
  const int64_t b = shapes[0][0], n = shapes[0][1], d = shapes[0][2], f = shapes[13][0], m = b * n;
  const int64_t h = shapes[17][1], T = shapes[17][2], dk = shapes[17][3];
  const float eps = hyper[0];
  const bool pre_ln = hyper[1] != 0.0f;
  const int act = static_cast<int>(hyper[2]);
  int64_t slot = -1;  // the first new token's slot: the row of place [T, n] whose column 0 is set
  for (int64_t t = 0; t < T && slot < 0; ++t)
    if (place[t * n]) slot = t;
  if (slot < 0 || slot + n > T || h * dk != d) return 2;
  std::vector<float> normed(m * d), q(m * d), k(m * d), v(m * d), ctx(m * d), x1(m * d), hidden(m * f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g_threads, d / 64)));
  // One team of threads runs every phase, meeting at a spinning barrier between dependent phases; each thread
  // takes its share of every matrix's output columns (and of the attention's (row, head) pairs).
  // parallel_for hands each thread one index, or the whole range to the calling thread alone when the pool is
  // busy, and that thread is then a team of one.
  SpinBarrier team(threads);
  auto run = [&](int part, int parts, SpinBarrier *sync) {
    int64_t c0, c1, p0, p1, f0, f1;
    part_of(d, part, parts, &c0, &c1);
    part_of(b * h, part, parts, &p0, &p1);
    part_of(f, part, parts, &f0, &f1);
    const float *in = x;
    if (pre_ln) {
      in = normed.data();
      if (part == 0) layer_norm_rows(x, ln1w, ln1b, eps, normed.data(), 0, m, d);
      sync->wait();
    }
    affine_columns(in, wq, bq, q.data(), m, d, d, c0, c1);
    affine_columns(in, wk, bk, k.data(), m, d, d, c0, c1);
    affine_columns(in, wv, bv, v.data(), m, d, d, c0, c1);
    sync->wait();
    for (int64_t pair = p0; pair < p1; ++pair) {  // the new keys and values into their slots
      const int64_t bi = pair / h, hi = pair % h;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = (bi * n + i) * d + hi * dk, at = (pair * T + slot + i) * dk;
        std::memcpy(kbuf + at, k.data() + row, sizeof(float) * dk);
        std::memcpy(vbuf + at, v.data() + row, sizeof(float) * dk);
      }
    }
    sync->wait();
    std::vector<float> scores(T);
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t bi = pair / h, hi = pair % h;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = (bi * n + i) * d + hi * dk;
        attend_cached(q.data() + row, kbuf + pair * T * dk, vbuf + pair * T * dk, mask + (bi * n + i) * T, T, dk,
                      scale, scores.data(), ctx.data() + row);
      }
    }
    sync->wait();
    affine_columns(ctx.data(), wo, bo, x1.data(), m, d, d, c0, c1);  // the attention's output projection
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = c0; j < c1; ++j) x1[i * d + j] += x[i * d + j];
    sync->wait();
    if (part == 0) {
      if (pre_ln) {
        layer_norm_rows(x1.data(), ln2w, ln2b, eps, normed.data(), 0, m, d);
      } else {
        layer_norm_rows(x1.data(), ln1w, ln1b, eps, x1.data(), 0, m, d);
      }
    }
    sync->wait();
    in = pre_ln ? normed.data() : x1.data();
    affine_columns(in, w1, b1, hidden.data(), m, f, d, f0, f1);
    for (int64_t i = 0; i < m; ++i) activate(hidden.data() + i * f + f0, f1 - f0, act);
    sync->wait();
    affine_columns(hidden.data(), w2, b2, y, m, d, f, c0, c1);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = c0; j < c1; ++j) y[i * d + j] += x1[i * d + j];
    if (!pre_ln) {
      sync->wait();
      if (part == 0) layer_norm_rows(y, ln2w, ln2b, eps, y, 0, m, d);
    }
  };
  pool().parallel_for(threads, 1, [&](int64_t i0, int64_t i1) {
    if (i1 - i0 == 1 && threads > 1) {
      run(static_cast<int>(i0), threads, &team);
    } else {
      SpinBarrier alone(1);
      run(0, 1, &alone);
    }
  });
  return 0;
}
