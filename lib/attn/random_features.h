// Random projections for Performer's feature maps (docs/attention.md, 4.2-4.3) and the policy that
// says when they are redrawn. A draw is a pure function of (run seed, layer, draw number), so a run is
// reproducible and a resumed run sees exactly the features the uninterrupted one would have.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/attention.h"

namespace lra {

// redraw=step (a new projection every training step), interval:N (every N steps) or never.
struct RedrawPolicy {
  enum class Kind { Step, Interval, Never };
  Kind kind = Kind::Step;
  int64_t interval = 1;
  // Throws, naming the valid forms, on anything else.
  static RedrawPolicy parse(const std::string& text);
  // The draw number that training step `step` uses.
  int64_t draw(int64_t step) const;
};

// m x d, row-major. Orthogonal: ceil(m/d) blocks, each the Q factor of a d x d Gaussian matrix (signs
// fixed by R's diagonal, so Q is Haar-distributed), whose rows are scaled by the norms of independent
// N(0, I_d) vectors: every row is N(0, I_d) in law and rows within a block are orthogonal; the last
// block contributes its first m mod d rows. Otherwise i.i.d. N(0, 1) entries.
std::vector<double> draw_projection(int m, int d, bool orthogonal, uint64_t seed, int layer, int64_t draw);

// The options of performer and performer-relu, on every device: m random features (performer-relu: 0 = no
// projection, phi = relu(x) + kernel_eps as in LRA's code), orthogonal rows, the redraw policy, and the
// feature map's eps (performer's feature_eps, performer-relu's kernel_eps).
struct PerformerOptions {
  int features = 0;
  bool orthogonal = true;
  RedrawPolicy redraw;
  double eps = 0.0;
  static PerformerOptions parse(const AttnConfig& c);       // performer: features > 0
  static PerformerOptions parse_relu(const AttnConfig& c);  // performer-relu: features >= 0
};

}  // namespace lra
