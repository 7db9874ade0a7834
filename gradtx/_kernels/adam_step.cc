// SPDX-License-Identifier: Apache-2.0
//
// One pass of a fused Adam(W) step over a float32 leaf, for XLA:CPU through the XLA FFI.
//
// XLA:CPU emits one loop per output array, so an Adam step compiled from jnp reads
// and writes 40 bytes per parameter (three passes: mu, nu, params). This kernel reads
// p, g, m, v and writes p, m, v once: 28 bytes. The outputs alias the inputs p, m, v
// (the Python side passes `input_output_aliases`), so the update is in place.
//
// Per element, with the 11 scalars s = [gain, b1, 1-b1, b2, 1-b2, c1, c2, eps_root,
// eps, a, b] computed by gradtx/_fusion.py:
//   gc = gain * g
//   m  = (1-b1) gc + b1 m
//   v  = (1-b2) gc^2 + b2 v
//   u  = (m / c1) / (sqrt(v / c2 + eps_root) + eps)
//   p  = p + (a u + b p)
// which is scale_by_adam's update, followed by the chain's weight decay (b) and
// learning rate (a), then apply_updates. Compiled with -ffp-contract=off so that no
// multiply-add is fused and each step rounds like the jnp program does.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kNumScalars = 11;
// Elements per task: 4 arrays x 256 KiB, so a chunk's lines stay in L2 while in use.
constexpr int64_t kChunk = int64_t{1} << 16;

struct Scalars {
  float gain, b1, one_minus_b1, b2, one_minus_b2, c1, c2, eps_root, eps, a, b;
};
static_assert(sizeof(Scalars) == kNumScalars * sizeof(float));

#if defined(__x86_64__) && defined(__GNUC__)
// AVX2 halves the time of the divisions and square root; the baseline build runs
// anywhere. Both round the same (no FMA contraction, IEEE division and sqrt).
__attribute__((target_clones("avx2", "default")))
#endif
void UpdateSpan(const Scalars& s, const float* __restrict g, float* __restrict p,
                float* __restrict m, float* __restrict v, int64_t begin,
                int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float gc = g[i] * s.gain;
    const float mi = s.one_minus_b1 * gc + s.b1 * m[i];
    const float vi = s.one_minus_b2 * (gc * gc) + s.b2 * v[i];
    const float u = (mi / s.c1) / (std::sqrt(vi / s.c2 + s.eps_root) + s.eps);
    const float pi = p[i];
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + (s.a * u + s.b * pi);
  }
}

// Chunks are claimed from a shared counter by the calling thread and by helper tasks
// on XLA's intra-op pool. A helper that starts late finds nothing left and returns,
// so the caller only ever waits for chunks another thread is already running.
struct Job {
  Scalars s;
  const float* g;
  float* p;
  float* m;
  float* v;
  int64_t n = 0;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void Drain() {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      const int64_t begin = c * kChunk;
      UpdateSpan(s, g, p, m, v, begin, std::min(n, begin + kChunk));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error AdamStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                    ffi::Buffer<ffi::F32> scalars, ffi::Buffer<ffi::F32> p_in,
                    ffi::Buffer<ffi::F32> m_in, ffi::Buffer<ffi::F32> v_in,
                    ffi::ResultBuffer<ffi::F32> p, ffi::ResultBuffer<ffi::F32> m,
                    ffi::ResultBuffer<ffi::F32> v) {
  if (scalars.element_count() != kNumScalars) {
    return ffi::Error::InvalidArgument(
        "gradtx fused Adam kernel: expected 11 scalars");
  }
  const int64_t n = g.element_count();
  if (p_in.element_count() != n || m_in.element_count() != n ||
      v_in.element_count() != n) {
    return ffi::Error::InvalidArgument(
        "gradtx fused Adam kernel: g, p, m and v differ in size");
  }
  auto job = std::make_shared<Job>();
  std::copy_n(scalars.typed_data(), kNumScalars, reinterpret_cast<float*>(&job->s));
  job->g = g.typed_data();
  job->p = p->typed_data();
  job->m = m->typed_data();
  job->v = v->typed_data();
  // Outputs alias the inputs; if XLA ever hands over fresh buffers, copy first.
  if (job->p != p_in.typed_data()) std::copy_n(p_in.typed_data(), n, job->p);
  if (job->m != m_in.typed_data()) std::copy_n(m_in.typed_data(), n, job->m);
  if (job->v != v_in.typed_data()) std::copy_n(v_in.typed_data(), n, job->v);
  job->n = n;
  job->chunks = (n + kChunk - 1) / kChunk;
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), job->chunks - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([job] { job->Drain(); });
  }
  job->Drain();
  while (job->done.load(std::memory_order_acquire) < job->chunks) {
    std::this_thread::yield();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GradtxAdamStep, AdamStep,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scalars
                                  .Arg<ffi::Buffer<ffi::F32>>()  // p
                                  .Arg<ffi::Buffer<ffi::F32>>()  // m
                                  .Arg<ffi::Buffer<ffi::F32>>()  // v
                                  .Ret<ffi::Buffer<ffi::F32>>()  // p
                                  .Ret<ffi::Buffer<ffi::F32>>()  // m
                                  .Ret<ffi::Buffer<ffi::F32>>());  // v
