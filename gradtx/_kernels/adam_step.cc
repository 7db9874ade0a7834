// SPDX-License-Identifier: Apache-2.0
//
// One pass of a fused Adam(W) step over a float32 leaf, for XLA:CPU through the XLA FFI.
//
// XLA:CPU emits one loop per output array, so an Adam step compiled from jnp reads
// and writes 40 bytes per parameter (three passes: mu, nu, params). This kernel reads
// p, g, m, v and writes p, m, v once: 28 bytes (20 with bfloat16 moments). The
// outputs alias the inputs p, m, v (the Python side passes `input_output_aliases`),
// so the update is in place. m and v are each float32 or bfloat16; a bfloat16 moment
// is rounded to nearest-even when stored and the update uses the stored value, as
// scale_by_adam does.
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
#include <cstring>
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

// A stored moment: float32 as is, bfloat16 as its 16 high bits.
struct F32 {
  using T = float;
  static float Load(T x) { return x; }
  static T Store(float x) { return x; }
};
struct BF16 {
  using T = uint16_t;
  static float Load(T x) {
    const uint32_t bits = uint32_t{x} << 16;
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  }
  // Round to nearest, ties to even, as XLA converts; NaN stays a (quiet) NaN.
  // Branch-free, so that the loop vectorises.
  static T Store(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t quiet = (bits >> 16) | 0x40u;
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    return T(nan ? quiet : rounded);
  }
};

// Inlined into each entry point below, so that it is compiled for its target.
template <typename M, typename V>
[[gnu::always_inline]] inline void UpdateSpanImpl(const Scalars& s, const float* __restrict g, float* __restrict p,
                    typename M::T* __restrict m, typename V::T* __restrict v,
                    int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float gc = g[i] * s.gain;
    const typename M::T ms = M::Store(s.one_minus_b1 * gc + s.b1 * M::Load(m[i]));
    const typename V::T vs =
        V::Store(s.one_minus_b2 * (gc * gc) + s.b2 * V::Load(v[i]));
    const float mi = M::Load(ms);
    const float vi = V::Load(vs);
    const float u = (mi / s.c1) / (std::sqrt(vi / s.c2 + s.eps_root) + s.eps);
    const float pi = p[i];
    m[i] = ms;
    v[i] = vs;
    p[i] = pi + (s.a * u + s.b * pi);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// AVX2 halves the time of the divisions and square root; the baseline build runs
// anywhere. Both round the same (no FMA contraction, IEEE division and sqrt).
#define GRADTX_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define GRADTX_CLONES
#endif

// One entry point per moment-dtype pair, each compiled for AVX2 and baseline.
using SpanFn = void (*)(const Scalars&, const float*, float*, void*, void*, int64_t,
                        int64_t);
#define GRADTX_SPAN(NAME, M, V)                                                  \
  GRADTX_CLONES void NAME(const Scalars& s, const float* g, float* p, void* m,  \
                          void* v, int64_t begin, int64_t end) {                \
    UpdateSpanImpl<M, V>(s, g, p, static_cast<M::T*>(m), static_cast<V::T*>(v), \
                         begin, end);                                            \
  }
GRADTX_SPAN(SpanF32F32, F32, F32)
GRADTX_SPAN(SpanF32BF16, F32, BF16)
GRADTX_SPAN(SpanBF16F32, BF16, F32)
GRADTX_SPAN(SpanBF16BF16, BF16, BF16)

// Chunks are claimed from a shared counter by the calling thread and by helper tasks
// on XLA's intra-op pool. A helper that starts late finds nothing left and returns,
// so the caller only ever waits for chunks another thread is already running.
struct Job {
  Scalars s;
  SpanFn span;
  const float* g;
  float* p;
  void* m;
  void* v;
  int64_t n = 0;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void Drain() {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      const int64_t begin = c * kChunk;
      span(s, g, p, m, v, begin, std::min(n, begin + kChunk));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

SpanFn PickSpan(ffi::DataType m, ffi::DataType v) {
  const bool m16 = m == ffi::DataType::BF16, v16 = v == ffi::DataType::BF16;
  if (m16) return v16 ? SpanBF16BF16 : SpanBF16F32;
  return v16 ? SpanF32BF16 : SpanF32F32;
}

bool IsMomentType(ffi::DataType t) {
  return t == ffi::DataType::F32 || t == ffi::DataType::BF16;
}

ffi::Error AdamStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                    ffi::Buffer<ffi::F32> scalars, ffi::Buffer<ffi::F32> p_in,
                    ffi::AnyBuffer m_in, ffi::AnyBuffer v_in,
                    ffi::ResultBuffer<ffi::F32> p, ffi::Result<ffi::AnyBuffer> m,
                    ffi::Result<ffi::AnyBuffer> v) {
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
  if (!IsMomentType(m_in.element_type()) || !IsMomentType(v_in.element_type()) ||
      m->element_type() != m_in.element_type() ||
      v->element_type() != v_in.element_type()) {
    return ffi::Error::InvalidArgument(
        "gradtx fused Adam kernel: moments must be float32 or bfloat16");
  }
  auto job = std::make_shared<Job>();
  std::copy_n(scalars.typed_data(), kNumScalars, reinterpret_cast<float*>(&job->s));
  job->span = PickSpan(m_in.element_type(), v_in.element_type());
  job->g = g.typed_data();
  job->p = p->typed_data();
  job->m = m->untyped_data();
  job->v = v->untyped_data();
  // Outputs alias the inputs; if XLA ever hands over fresh buffers, copy first.
  if (job->p != p_in.typed_data()) std::copy_n(p_in.typed_data(), n, job->p);
  if (job->m != m_in.untyped_data()) {
    std::memcpy(job->m, m_in.untyped_data(), m_in.size_bytes());
  }
  if (job->v != v_in.untyped_data()) {
    std::memcpy(job->v, v_in.untyped_data(), v_in.size_bytes());
  }
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
                                  .Arg<ffi::AnyBuffer>()         // m
                                  .Arg<ffi::AnyBuffer>()         // v
                                  .Ret<ffi::Buffer<ffi::F32>>()  // p
                                  .Ret<ffi::AnyBuffer>()         // m
                                  .Ret<ffi::AnyBuffer>());       // v
