// GradientMonitor's compiled kernels on a CPU (`native.py` builds and loads
// this file; without it the monitor uses TensorFlow's ops).
//
// KerasActivationsHistograms: equal-width histograms of N float32 tensors,
// each over its own finite [min, max], with NaN and +-inf left out: the
// snapshot histograms. The buckets are those of tf.histogram_fixed_width
// over [min, max] of the finite values, and the output that of
// `accumulators.histograms`; a value within a float rounding of an inner
// edge may land in the bucket next to it. Two passes over each tensor (its
// range, then the counts), both vectorized by the compiler, and no
// temporary the size of the tensor; the tensors are shared out over the
// CPU threads. tf.histogram_fixed_width writes an int32 index per value
// and counts them in one serial loop, and its range takes two more passes:
// this is about 2x faster on the monitor's tensors.
//
// KerasActivationsPositiveCounts: a ReLU-family site's figures of one step
// (`accumulators._site_figures`) in one pass over its outputs: per unit
// the count of outputs > 0, and the count, sum and sum of squares of all.
#define EIGEN_USE_THREADS
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace {

REGISTER_OP("KerasActivationsHistograms")
    .Input("values: N * float")
    .Output("counts: double")
    .Output("lohi: float")
    .Attr("N: int >= 1")
    .Attr("bins: int >= 1")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      int n, bins;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      TF_RETURN_IF_ERROR(c->GetAttr("bins", &bins));
      c->set_output(0, c->Matrix(n, bins));
      c->set_output(1, c->Matrix(n, 2));
      return OkStatus();
    })
    .Doc(R"doc(
Equal-width histograms of each tensor over its own finite range.

values: The tensors.
counts: [N, bins] counts of the finite values.
lohi: [N, 2] the left and right edge of each histogram: the finite min and
  max, widened to max(|min|, 1) * 1e-3 when they are equal, [0, 1e-3] when
  no value is finite.
)doc");

// Not NaN or +-inf: the exponent bits are not all set (integer operations,
// which the compiler vectorizes; `std::isfinite` it does not).
inline bool Finite(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}

// [min, max] of the finite values of x; min > max when there are none.
// Sixteen lanes of partial minima and maxima, so that the loop vectorizes
// (a plain min/max reduction vectorizes only under -ffast-math).
void FiniteRange(const float* x, int64_t n, float* lo, float* hi) {
  constexpr int kLanes = 16;
  const float big = std::numeric_limits<float>::max();
  float mn[kLanes], mx[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    mn[j] = big;
    mx[j] = -big;
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      const bool ok = Finite(v);
      const float a = ok ? v : big;
      const float b = ok ? v : -big;
      mn[j] = a < mn[j] ? a : mn[j];
      mx[j] = b > mx[j] ? b : mx[j];
    }
  }
  for (; i < n; ++i) {
    const bool ok = Finite(x[i]);
    mn[0] = ok && x[i] < mn[0] ? x[i] : mn[0];
    mx[0] = ok && x[i] > mx[0] ? x[i] : mx[0];
  }
  float a = mn[0], b = mx[0];
  for (int j = 1; j < kLanes; ++j) {
    a = std::min(a, mn[j]);
    b = std::max(b, mx[j]);
  }
  if (a == big) {  // no finite value, or every finite value is FLT_MAX
    bool any = false;
    for (int64_t k = 0; k < n && !any; ++k) any = Finite(x[k]);
    if (!any) {
      a = 1.0f;
      b = 0.0f;
    }
  }
  *lo = a;
  *hi = b;
}

// The bucket of each value of x[0, m): `bins` for a non-finite value.
// In float when the range and the scale are normal floats (always, but for
// ranges near the largest or the smallest floats), else in double. (In
// TensorFlow's threads denormal floats are flushed to zero.)
void Buckets(const float* __restrict x, int64_t m, float lo, double span,
             double scale, int bins, int32_t* __restrict index) {
  const float top = static_cast<float>(bins - 1);
  if (span < 1e30 && scale > 1e-30 && scale < 1e30) {
    const float s = static_cast<float>(scale);
    for (int64_t i = 0; i < m; ++i) {  // vectorized
      const bool ok = Finite(x[i]);
      const float u = std::min((std::max(ok ? x[i] : lo, lo) - lo) * s, top);
      index[i] = ok ? static_cast<int32_t>(u) : bins;  // u >= 0
    }
    return;
  }
  const double low = lo;
  for (int64_t i = 0; i < m; ++i) {
    const bool ok = Finite(x[i]);
    const double u = (std::max(static_cast<double>(ok ? x[i] : lo), low) - low) * scale;
    index[i] = ok ? static_cast<int32_t>(u < top ? u : top) : bins;
  }
}

void Histogram(const float* x, int64_t n, int bins, double* counts, float* lohi) {
  float lo, hi;
  FiniteRange(x, n, &lo, &hi);
  if (!(lo <= hi)) lo = hi = 0.0f;  // no finite value
  if (!(hi > lo)) hi = lo + std::max(std::abs(lo), 1.0f) * 1e-3f;
  lohi[0] = lo;
  lohi[1] = hi;
  const double span = static_cast<double>(hi) - static_cast<double>(lo);
  const double scale = std::isfinite(span) ? bins / span : 0.0;
  // Eight interleaved partial counts, so that a run of values in one
  // bucket does not wait on its own increments; slot `bins` takes the
  // non-finite values and is dropped. int32 partials, added into int64
  // totals at the end and every 2^30 values.
  constexpr int kWays = 8;
  constexpr int64_t kChunk = 2048;
  constexpr int64_t kFlush = int64_t{1} << 30;
  const int64_t width = bins + 1;
  std::vector<int32_t> part(kWays * width, 0);
  std::vector<int64_t> total(bins, 0);
  int32_t index[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    Buckets(x + start, m, lo, span, scale, bins, index);
    int64_t i = 0;
    for (; i + kWays <= m; i += kWays) {
      for (int w = 0; w < kWays; ++w) ++part[w * width + index[i + w]];
    }
    for (; i < m; ++i) ++part[index[i]];
    if ((start + kChunk) % kFlush == 0 || start + kChunk >= n) {
      for (int w = 0; w < kWays; ++w) {
        for (int k = 0; k < bins; ++k) total[k] += part[w * width + k];
      }
      std::fill(part.begin(), part.end(), 0);
    }
  }
  for (int k = 0; k < bins; ++k) counts[k] = static_cast<double>(total[k]);
}

class HistogramsOp : public OpKernel {
 public:
  explicit HistogramsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bins", &bins_));
  }

  void Compute(OpKernelContext* ctx) override {
    OpInputList values;
    OP_REQUIRES_OK(ctx, ctx->input_list("values", &values));
    const int n = values.size();
    Tensor* counts = nullptr;
    Tensor* lohi = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n, bins_}), &counts));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n, 2}), &lohi));
    double* c = counts->flat<double>().data();
    float* r = lohi->flat<float>().data();
    int64_t total = 0;
    for (int i = 0; i < n; ++i) total += values[i].NumElements();
    const int bins = bins_;
    auto work = [&values, c, r, bins](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Tensor& t = values[i];
        Histogram(t.flat<float>().data(), t.NumElements(), bins, c + i * bins,
                  r + 2 * i);
      }
    };
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    // About 4 cycles a value over both passes.
    Shard(workers->num_threads, workers->workers, n,
          std::max<int64_t>(4 * total / std::max(n, 1), 1), work);
  }

 private:
  int bins_;
};

REGISTER_KERNEL_BUILDER(Name("KerasActivationsHistograms").Device(DEVICE_CPU),
                        HistogramsOp);

REGISTER_OP("KerasActivationsPositiveCounts")
    .Input("outputs: float")
    .Output("counts: float")
    .Output("sums: float")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle y;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &y));
      c->set_output(0, c->Vector(c->Dim(y, 1)));
      c->set_output(1, c->Vector(4));
      return OkStatus();
    })
    .Doc(R"doc(
One pass over an activation's outputs, viewed as [outer, units, inner].

counts: [units] how many outputs of each unit are > 0; NaN for a unit with
  a NaN output.
sums: [pairs, sum, half the sum of squares, sum of counts] (added in
  double; NaN where a value is).
)doc");

// Per unit of rows [begin, end) of x [outer, units, inner]: adds the count
// of outputs > 0, of NaN outputs, their sum and sum of squares to `acc`
// ([4, units]).
void UnitSums(const float* x, int64_t begin, int64_t end, int64_t units,
              int64_t inner, double* __restrict acc) {
  double* pos = acc;
  double* nan = acc + units;
  double* sum = acc + 2 * units;
  double* sq = acc + 3 * units;
  for (int64_t o = begin; o < end; ++o) {
    const float* __restrict row = x + o * units * inner;
    if (inner == 1) {
      for (int64_t u = 0; u < units; ++u) {  // vectorized
        const float v = row[u];
        pos[u] += v > 0.0f ? 1.0 : 0.0;
        nan[u] += v != v ? 1.0 : 0.0;
        sum[u] += v;
        sq[u] += static_cast<double>(v) * v;
      }
      continue;
    }
    for (int64_t u = 0; u < units; ++u) {
      const float* r = row + u * inner;
      double p = 0, q = 0, s = 0, w = 0;
      for (int64_t i = 0; i < inner; ++i) {
        p += r[i] > 0.0f ? 1.0 : 0.0;
        q += r[i] != r[i] ? 1.0 : 0.0;
        s += r[i];
        w += static_cast<double>(r[i]) * r[i];
      }
      pos[u] += p;
      nan[u] += q;
      sum[u] += s;
      sq[u] += w;
    }
  }
}

class PositiveCountsOp : public OpKernel {
 public:
  explicit PositiveCountsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& y = ctx->input(0);
    OP_REQUIRES(ctx, y.dims() == 3,
                errors::InvalidArgument("outputs must be [outer, units, inner], got ",
                                        y.shape().DebugString()));
    const int64_t outer = y.dim_size(0), units = y.dim_size(1), inner = y.dim_size(2);
    Tensor* counts = nullptr;
    Tensor* sums = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({units}), &counts));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({4}), &sums));
    const float* x = y.flat<float>().data();
    std::vector<std::vector<double>> parts;  // one [4, units] per shard
    mutex mu;
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<double> acc(4 * units, 0.0);
      UnitSums(x, begin, end, units, inner, acc.data());
      mutex_lock lock(mu);
      parts.push_back(std::move(acc));
    };
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(workers->num_threads, workers->workers, outer,
          std::max<int64_t>(2 * units * inner, 1), work);
    float* c = counts->flat<float>().data();
    double s = 0, q = 0, total = 0;
    for (int64_t u = 0; u < units; ++u) {
      double p = 0, bad = 0;
      for (const auto& part : parts) {
        p += part[u];
        bad += part[units + u];
        s += part[2 * units + u];
        q += part[3 * units + u];
      }
      const double count = bad > 0 ? std::numeric_limits<double>::quiet_NaN() : p;
      c[u] = static_cast<float>(count);
      total += count;
    }
    float* out = sums->flat<float>().data();
    out[0] = static_cast<float>(outer * units * inner);
    out[1] = static_cast<float>(s);
    out[2] = static_cast<float>(0.5 * q);
    out[3] = static_cast<float>(total);
  }
};

REGISTER_KERNEL_BUILDER(Name("KerasActivationsPositiveCounts").Device(DEVICE_CPU),
                        PositiveCountsOp);

}  // namespace
}  // namespace tensorflow
