#include "attn/random_features.h"

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "core/rng.h"

namespace lra {

RedrawPolicy RedrawPolicy::parse(const std::string& text) {
  RedrawPolicy p;
  if (text == "step") return p;
  if (text == "never") {
    p.kind = Kind::Never;
    return p;
  }
  const std::string prefix = "interval:";
  if (text.compare(0, prefix.size(), prefix) == 0) {
    const std::string n = text.substr(prefix.size());
    char* end = nullptr;
    const long long v = n.empty() ? 0 : std::strtoll(n.c_str(), &end, 10);
    if (v > 0 && end != nullptr && *end == '\0') {
      p.kind = Kind::Interval;
      p.interval = v;
      return p;
    }
  }
  LRA_FAIL("redraw='{}' is not a redraw policy; use step, interval:N (N > 0 training steps) or never", text);
}

int64_t RedrawPolicy::draw(int64_t step) const {
  switch (kind) {
    case Kind::Step:
      return step;
    case Kind::Interval:
      return step / interval;
    case Kind::Never:
      break;
  }
  return 0;
}

std::vector<double> draw_projection(int m, int d, bool orthogonal, uint64_t seed, int layer, int64_t draw) {
  LRA_CHECK(m > 0 && d > 0, "a projection needs m > 0 features of d > 0 inputs, got m={} d={}", m, d);
  Rng rng(seed, streams::kFeatures | (static_cast<uint64_t>(layer) << 40) | static_cast<uint64_t>(draw));
  std::vector<double> w(static_cast<size_t>(m) * d);
  if (!orthogonal) {
    for (double& v : w) v = rng.normal();
    return w;
  }
  Eigen::MatrixXd G(d, d);
  for (int r0 = 0; r0 < m; r0 += d) {
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) G(i, j) = rng.normal();
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(G);
    Eigen::MatrixXd Q = qr.householderQ();
    const Eigen::MatrixXd& R = qr.matrixQR();
    for (int k = 0; k < d; ++k)
      if (R(k, k) < 0) Q.col(k) = -Q.col(k);
    // Rows of Q^T (columns of Q) are orthonormal.
    for (int r = r0; r < std::min(m, r0 + d); ++r)
      for (int j = 0; j < d; ++j) w[static_cast<size_t>(r) * d + j] = Q(j, r - r0);
  }
  for (int r = 0; r < m; ++r) {
    double norm2 = 0;
    for (int j = 0; j < d; ++j) {
      const double g = rng.normal();
      norm2 += g * g;
    }
    const double s = std::sqrt(norm2);
    for (int j = 0; j < d; ++j) w[static_cast<size_t>(r) * d + j] *= s;
  }
  return w;
}

PerformerOptions PerformerOptions::parse(const AttnConfig& c) {
  PerformerOptions o{c.hp.at("features").get<int>(), c.hp.at("orthogonal").get<bool>(),
                     RedrawPolicy::parse(c.hp.at("redraw").get<std::string>()), c.hp.at("feature_eps").get<double>()};
  LRA_CHECK(o.features > 0, "performer: features must be positive, got {}", o.features);
  return o;
}

PerformerOptions PerformerOptions::parse_relu(const AttnConfig& c) {
  PerformerOptions o{c.hp.at("features").get<int>(), c.hp.at("orthogonal").get<bool>(),
                     RedrawPolicy::parse(c.hp.at("redraw").get<std::string>()), c.hp.at("kernel_eps").get<double>()};
  LRA_CHECK(o.features >= 0, "performer-relu: features must be 0 (no projection, as LRA's code) or positive, got {}",
            o.features);
  return o;
}

}  // namespace lra
