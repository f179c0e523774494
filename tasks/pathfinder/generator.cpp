// The Pathfinder image generator: snakes2.py's algorithm (docs/data-formats.md 7.3) with the settings
// of 7.4, drawn deterministically from one Philox stream per image.
//
// Facts relied on, beyond pathfinder.h:
// - Coordinates are (y, x); a step of d in orientation t moves by (d sin t, d cos t) and is rounded
//   up (translate_coord's ceil). Seed orientations are whole degrees in [-180, 180).
// - A paddle drawn from S in orientation t: on a grid `antialias` times finer, a window of
//   2*H*aa + 1 pixels with H = L + ceil(thickness) + m, a PIL line from the centre to the centre
//   plus L*aa*(sin t, cos t) (ceil) of width round(thickness*aa); its exclusion mask is that line
//   dilated by a disk of radius m*aa. Both are shrunk to 2H + 1 pixels with PIL's Lanczos filter
//   (8-bit, horizontal pass first) and placed centred on S.
// - Growth (extend_snake): P' = P + (L + 2m) u(t); candidates are the distinct integer points of
//   the circle of radius L + m around P' sampled at one-pixel arc steps (truncated, in bounds),
//   weighted by (1 - max of the mask within m) * max(cos(min(|turn| * continuity, pi/2)), 0)^2;
//   the paddle is drawn from the chosen point back towards P' and kept when max(mask + its
//   exclusion mask) < 1.8 (up to paddle_tries draws). The mask then takes the *previous* paddle's
//   exclusion mask, so a paddle never collides with its own predecessor.
// - Seeds: a tail uniform among the pixels where the paddle's full-strength exclusion footprint
//   meets no mask value above 0.3 (after blocking a band: 2 * seed_distance wide for the first
//   target snake, 1 pixel for distractors); the second target tail is seed_distance away in a
//   whole-degree direction (numpy's round-half-even) and is not checked against the mask.
// - Markers: disks of marker_radius*aa on the fine grid centred on fine pixel (y*aa, x*aa),
//   Lanczos-shrunk; intensity 1. Target paddles have contrast paddle_contrast * snake_contrast,
//   distractors snake_contrast. The image is the pixelwise max, rescaled min..max to 0..255 as
//   scipy.misc.imsave does (round half up).
// Deliberate differences from snakes2.py, so that a label never lies:
// - A target paddle is also tested against the other target snake's newest paddle (snakes2 merges
//   a paddle's mask only when its successor is placed, so the two targets, grown in turn, could
//   touch: about 2% of 32 px negatives had one target drawn over the other's far end).
// - Both target snakes' last exclusion masks are merged before the distractors are placed
//   (snakes2 merges only the second one's, so a distractor could be drawn over the first's end).
// And two that change nothing but time or an off-by-one: the seed footprint is taken relative to
// the tail itself (snakes2's kernel is off by one pixel diagonally and cropped), and distractor
// seeding stops at once when less than stop_free_fraction of the canvas is free (snakes2 keeps
// retrying in vain).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "core/check.h"
#include "core/system.h"
#include "tasks/pathfinder/pathfinder.h"

namespace lra::pathfinder {

namespace {

constexpr double kPi = 3.14159265358979323846;
// Target-pair attempts before the settings count as impossible (snakes2 retries without limit;
// a valid setting needs a handful).
constexpr int kMaxPairAttempts = 10000;
// Uniform proposals for a distractor tail before the free pixels are listed exhaustively.
constexpr int kTailProposals = 32;
// The generator's Philox streams: kStreamBase | resolution code | contour code | split | index.
constexpr uint64_t kStreamBase = 9ull << 56;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= kPi;
  return std::sin(x) / x;
}

double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

// Pillow's 8-bit resampling along one axis with the Lanczos filter: the filter is widened by the
// shrink factor, each output pixel's weights are normalised and turned into 22-bit fixed point, and
// every pass rounds and clips to 0..255.
class Resampler {
 public:
  Resampler(int in, int out) : in_(in), out_(out) {
    const double scale = static_cast<double>(in) / out;
    const double filterscale = std::max(scale, 1.0);
    const double support = 3.0 * filterscale;
    ksize_ = static_cast<int>(std::ceil(support)) * 2 + 1;
    first_.resize(static_cast<size_t>(out));
    count_.resize(static_cast<size_t>(out));
    k_.assign(static_cast<size_t>(out) * static_cast<size_t>(ksize_), 0);
    std::vector<double> w(static_cast<size_t>(ksize_));
    for (int o = 0; o < out; ++o) {
      const double center = (o + 0.5) * scale;
      int lo = static_cast<int>(center - support + 0.5);
      if (lo < 0) lo = 0;
      int hi = static_cast<int>(center + support + 0.5);
      if (hi > in) hi = in;
      const int n = hi - lo;
      double total = 0.0;
      for (int i = 0; i < n; ++i) {
        w[static_cast<size_t>(i)] = lanczos3((i + lo - center + 0.5) / filterscale);
        total += w[static_cast<size_t>(i)];
      }
      for (int i = 0; i < n; ++i) {
        const double v = total != 0.0 ? w[static_cast<size_t>(i)] / total : w[static_cast<size_t>(i)];
        k_[static_cast<size_t>(o) * static_cast<size_t>(ksize_) + static_cast<size_t>(i)] =
            static_cast<int32_t>(v < 0 ? -0.5 + v * kOne : 0.5 + v * kOne);
      }
      first_[static_cast<size_t>(o)] = lo;
      count_[static_cast<size_t>(o)] = n;
    }
  }
  // Resamples the square in_ x in_ image `src` to out_ x out_, computing only output rows
  // [y0, y1) and columns [x0, x1) of `dst` (row stride out_); `tmp` is scratch.
  void apply(const uint8_t* src, uint8_t* dst, int y0, int y1, int x0, int x1, std::vector<uint8_t>& tmp) const {
    if (y0 >= y1 || x0 >= x1) return;
    const int r0 = first_[static_cast<size_t>(y0)];
    const int r1 = first_[static_cast<size_t>(y1 - 1)] + count_[static_cast<size_t>(y1 - 1)];
    const int w = x1 - x0;
    tmp.resize(static_cast<size_t>(r1 - r0) * static_cast<size_t>(w));
    for (int r = r0; r < r1; ++r) {
      const uint8_t* row = src + static_cast<size_t>(r) * static_cast<size_t>(in_);
      for (int x = x0; x < x1; ++x)
        tmp[static_cast<size_t>(r - r0) * static_cast<size_t>(w) + static_cast<size_t>(x - x0)] =
            dot(row + first_[static_cast<size_t>(x)], 1, x);
    }
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        dst[static_cast<size_t>(y) * static_cast<size_t>(out_) + static_cast<size_t>(x)] =
            dot(tmp.data() + static_cast<size_t>(first_[static_cast<size_t>(y)] - r0) * static_cast<size_t>(w) +
                    static_cast<size_t>(x - x0),
                w, y);
  }

 private:
  static constexpr int kBits = 22;  // Pillow's PRECISION_BITS for 8-bit images
  static constexpr double kOne = static_cast<double>(1 << kBits);

  uint8_t dot(const uint8_t* p, int stride, int o) const {
    const int32_t* k = k_.data() + static_cast<size_t>(o) * static_cast<size_t>(ksize_);
    int64_t s = int64_t{1} << (kBits - 1);
    for (int i = 0; i < count_[static_cast<size_t>(o)]; ++i)
      s += static_cast<int64_t>(p[static_cast<ptrdiff_t>(i) * stride]) * k[i];
    const int64_t v = s >> kBits;
    return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
  }

  int in_, out_, ksize_ = 0;
  std::vector<int> first_, count_;
  std::vector<int32_t> k_;
};

// One paddle in one orientation, rendered in a (2*half + 1)^2 window centred on its start.
struct Paddle {
  int half = 0, size = 0;
  std::vector<double> line, mask;              // the 8-bit values / 255
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;          // the window rows and columns where line or mask is non-zero
  std::vector<std::pair<int, int>> footprint;  // (dy, dx) where the mask is at full strength
  // The free tails for the first target paddle, which always meets the same fresh mask.
  bool has_target_tails = false;
  std::vector<int> target_tails;
};

// A point of the circle of candidate heads, relative to its centre P'.
struct Offset {
  int dy, dx;
  double theta;  // atan2(dy, dx)
};

// PIL's one-pixel line (Draw.c line8 of the Pillow releases snakes2 ran on): Bresenham from
// (x0, y0) without the end point.
void draw_thin_line(std::vector<uint8_t>& g, int n, int x0, int y0, int x1, int y1) {
  auto point = [&](int x, int y) {
    if (x >= 0 && x < n && y >= 0 && y < n)
      g[static_cast<size_t>(y) * static_cast<size_t>(n) + static_cast<size_t>(x)] = 255;
  };
  int dx = x1 - x0, dy = y1 - y0;
  const int xs = dx < 0 ? -1 : 1, ys = dy < 0 ? -1 : 1;
  dx = std::abs(dx);
  dy = std::abs(dy);
  if (dx == 0) {
    for (int i = 0; i < dy; ++i, y0 += ys) point(x0, y0);
  } else if (dy == 0) {
    for (int i = 0; i < dx; ++i, x0 += xs) point(x0, y0);
  } else if (dx > dy) {
    const int n2 = dx;
    dy += dy;
    int e = dy - dx;
    dx += dx;
    for (int i = 0; i < n2; ++i) {
      point(x0, y0);
      if (e >= 0) {
        y0 += ys;
        e -= dx;
      }
      e += dy;
      x0 += xs;
    }
  } else {
    const int n2 = dy;
    dx += dx;
    int e = dx - dy;
    dy += dy;
    for (int i = 0; i < n2; ++i) {
      point(x0, y0);
      if (e >= 0) {
        x0 += xs;
        e -= dy;
      }
      e += dx;
      y0 += ys;
    }
  }
}

// PIL's wide line (ImagingDrawWideLine): the quadrilateral with integer corners offset by the
// rounded half-widths across the segment, filled; a pixel is inside when its centre is inside or
// on the edge.
void draw_wide_line(std::vector<uint8_t>& g, int n, int x0, int y0, int x1, int y1, int width) {
  const int dx = x1 - x0, dy = y1 - y0;
  const double big = std::sqrt(static_cast<double>(dx * dx + dy * dy));
  const double small = (width - 1) / 2.0;
  auto round_up = [](double f) {
    return static_cast<int>(f >= 0 ? std::floor(f + 0.5) : -std::floor(std::fabs(f) + 0.5));
  };
  auto round_down = [](double f) {
    return static_cast<int>(f >= 0 ? std::ceil(f - 0.5) : -std::ceil(std::fabs(f) - 0.5));
  };
  const double ratio_max = round_up(small) / big, ratio_min = round_down(small) / big;
  const int dxmin = round_down(ratio_min * dy), dxmax = round_down(ratio_max * dy);
  const int dymin = round_down(ratio_min * dx), dymax = round_down(ratio_max * dx);
  const int vx[4] = {x0 - dxmin, x1 - dxmin, x1 + dxmax, x0 + dxmax};
  const int vy[4] = {y0 + dymax, y1 + dymax, y1 - dymin, y0 - dymin};
  // Inside a convex polygon: the same side of every edge (either orientation).
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      bool pos = true, neg = true;
      for (int e = 0; e < 4; ++e) {
        const int ax = vx[e], ay = vy[e], bx = vx[(e + 1) % 4], by = vy[(e + 1) % 4];
        const long cross = static_cast<long>(bx - ax) * (y - ay) - static_cast<long>(by - ay) * (x - ax);
        pos = pos && cross >= 0;
        neg = neg && cross <= 0;
      }
      if (pos || neg) g[static_cast<size_t>(y) * static_cast<size_t>(n) + static_cast<size_t>(x)] = 255;
    }
}

// The pixels within a radius of the origin, also as offsets into a row-major canvas.
struct Disk {
  int radius = 0;
  std::vector<std::pair<int, int>> offsets;
  std::vector<ptrdiff_t> flat;
};

std::vector<std::pair<int, int>> disk_offsets(double radius) {
  std::vector<std::pair<int, int>> d;
  const int r = static_cast<int>(std::floor(radius));
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dx * dx + dy * dy <= radius * radius) d.emplace_back(dy, dx);
  return d;
}

int translate(int c, double dist, double f) { return static_cast<int>(std::ceil(c + dist * f)); }

// snakes2's flip_by_pi.
double flip(double t) { return t < 0 ? t + kPi : t - kPi; }

bool same_params(const Params& a, const Params& b) {
  return a.resolution == b.resolution && a.contour_length == b.contour_length && a.padding == b.padding &&
         a.antialias == b.antialias && a.paddle_length == b.paddle_length && a.paddle_thickness == b.paddle_thickness &&
         a.margins == b.margins && a.marker_radius == b.marker_radius && a.seed_distance == b.seed_distance &&
         a.continuity == b.continuity && a.snake_contrast == b.snake_contrast &&
         a.paddle_contrast == b.paddle_contrast && a.distractor_length == b.distractor_length &&
         a.distractor_snakes == b.distractor_snakes && a.paddle_tries == b.paddle_tries &&
         a.distractor_tries == b.distractor_tries && a.stop_free_fraction == b.stop_free_fraction;
}

struct Snake {
  int id = 2;                      // 0 and 1: the target snakes; 2: a distractor
  const Snake* partner = nullptr;  // the other target snake
  int py = 0, px = 0;              // pivot
  double theta = 0;                // orientation
  const Paddle* last = nullptr;    // the newest paddle, whose mask is not merged yet
  int ly = 0, lx = 0;              // where it is drawn
  int tail_y = 0, tail_x = 0;      // the origin tip (tail of the first paddle)
  int tip_y = 0, tip_x = 0;        // the terminal tip (head of the newest paddle)
};

enum class Seeded { Ok, Failed, Full };

// A paddle kept for the image; paddles are drawn once the image's snakes are final.
struct Stroke {
  const Paddle* paddle;
  int y, x;
  double contrast;
  int snake;  // 0 and 1: the target snakes; 2: a distractor
};

// The per-thread drawing state: canvases, rendered paddles and resamplers.
class Drawer {
 public:
  explicit Drawer(const Params& p)
      : p_(p),
        n_(p.resolution),
        marker_(p.resolution * p.antialias, p.resolution),
        marker_disk_(disk_offsets(p.marker_radius * p.antialias)) {
    for (int m : p.margins) {
      const int half = p.paddle_length + static_cast<int>(std::ceil(p.paddle_thickness)) + m;
      resamplers_.emplace_back(2 * half * p.antialias + 1, 2 * half + 1);
      Disk disk;
      disk.radius = m;
      disk.offsets = disk_offsets(m);
      for (const auto& [dy, dx] : disk.offsets) disk.flat.push_back(static_cast<ptrdiff_t>(dy) * n_ + dx);
      small_disks_.push_back(std::move(disk));
      large_disks_.push_back(disk_offsets(m * p.antialias));
      circles_.push_back(circle(p.paddle_length + m));
    }
    paddles_.resize(p.margins.size());
    turns_.resize(p.margins.size());
    const size_t area = static_cast<size_t>(n_) * static_cast<size_t>(n_);
    image_.resize(area);
    mask_.resize(area);
    fine_.assign(area * static_cast<size_t>(p.antialias) * static_cast<size_t>(p.antialias), 0);
    marker_px_.assign(area, 0);
    fresh_mask_.resize(area);
    for (int y = 0; y < n_; ++y)
      for (int x = 0; x < n_; ++x) {
        const bool border = y < p.padding || y >= n_ - p.padding || x < p.padding || x >= n_ - p.padding;
        fresh_mask_[at(y, x)] = border ? 1.0f : 0.0f;
        fresh_free_ += !border;
      }
  }

  const Params& params() const { return p_; }

  int draw(Rng& rng, uint8_t* out, int& margin, Trace* trace) {
    const int label = static_cast<int>(rng.below(2));
    mi_ = static_cast<int>(rng.below(p_.margins.size()));
    m_ = p_.margins[static_cast<size_t>(mi_)];
    margin = m_;
    Snake a, b;
    a.id = 0;
    b.id = 1;
    a.partner = &b;
    b.partner = &a;
    int attempts = 0;
    while (!two_snakes(rng, a, b)) {
      LRA_CHECK(++attempts < kMaxPairAttempts,
                "the Pathfinder generator could not place the two target snakes in {} attempts "
                "(resolution {}, contour length {}, margin {}); these settings leave too little room",
                kMaxPairAttempts, n_, p_.contour_length, m_);
    }
    distractors(rng);
    std::fill(image_.begin(), image_.end(), 0.0f);
    for (const Stroke& k : strokes_) stamp(*k.paddle, k.y, k.x, k.contrast);
    const int origin = static_cast<int>(rng.below(2));
    const Snake& s = origin == 0 ? a : b;
    const Snake& t = (label == 1) == (origin == 0) ? a : b;
    add_marker(s.tail_y, s.tail_x);
    add_marker(t.tip_y, t.tip_x);
    // scipy's bytescale: min..max to 0..255, round half up.
    const auto [lo, hi] = std::minmax_element(image_.begin(), image_.end());
    const double cmin = *lo, range = *hi - *lo;
    const double scale = 255.0 / (range > 0 ? range : 1.0);
    bytescale(image_, cmin, scale, out);
    if (trace != nullptr) {
      trace->markers[0] = s.tail_y;
      trace->markers[1] = s.tail_x;
      trace->markers[2] = t.tip_y;
      trace->markers[3] = t.tip_x;
      trace->marker_snake = origin;
      for (int id = 0; id < 2; ++id) {
        std::fill(image_.begin(), image_.end(), 0.0f);
        for (const Stroke& k : strokes_)
          if (k.snake == id) stamp(*k.paddle, k.y, k.x, k.contrast);
        trace->snakes[id].resize(image_.size());
        bytescale(image_, cmin, scale, trace->snakes[id].data());
      }
    }
    return label;
  }

 private:
  size_t at(int y, int x) const { return static_cast<size_t>(y) * static_cast<size_t>(n_) + static_cast<size_t>(x); }
  bool inside(int y, int x) const { return y >= 0 && y < n_ && x >= 0 && x < n_; }

  Paddle& paddle(double theta) {
    uint64_t key;
    static_assert(sizeof key == sizeof theta);
    std::memcpy(&key, &theta, sizeof key);
    auto& cache = paddles_[static_cast<size_t>(mi_)];
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    return cache.emplace(key, render(theta)).first->second;
  }

  Paddle render(double theta) {
    const int aa = p_.antialias, L = p_.paddle_length;
    Paddle pd;
    pd.half = L + static_cast<int>(std::ceil(p_.paddle_thickness)) + m_;
    pd.size = 2 * pd.half + 1;
    const int fine = 2 * pd.half * aa + 1, c = pd.half * aa;
    const int hy = translate(c, static_cast<double>(L * aa), std::sin(theta));
    const int hx = translate(c, static_cast<double>(L * aa), std::cos(theta));
    std::vector<uint8_t> line(static_cast<size_t>(fine) * static_cast<size_t>(fine), 0);
    const int width = static_cast<int>(std::nearbyint(p_.paddle_thickness * aa));
    if (width <= 1)
      draw_thin_line(line, fine, c, c, hx, hy);
    else
      draw_wide_line(line, fine, c, c, hx, hy, width);
    std::vector<uint8_t> dilated(line.size(), 0);
    const auto& disk = large_disks_[static_cast<size_t>(mi_)];
    for (int y = 0; y < fine; ++y)
      for (int x = 0; x < fine; ++x) {
        if (line[static_cast<size_t>(y) * static_cast<size_t>(fine) + static_cast<size_t>(x)] == 0) continue;
        for (const auto& [dy, dx] : disk) {
          const int yy = y + dy, xx = x + dx;
          if (yy >= 0 && yy < fine && xx >= 0 && xx < fine)
            dilated[static_cast<size_t>(yy) * static_cast<size_t>(fine) + static_cast<size_t>(xx)] = 255;
        }
      }
    const Resampler& rs = resamplers_[static_cast<size_t>(mi_)];
    const size_t area = static_cast<size_t>(pd.size) * static_cast<size_t>(pd.size);
    std::vector<uint8_t> small_line(area), small_mask(area);
    rs.apply(line.data(), small_line.data(), 0, pd.size, 0, pd.size, tmp_);
    rs.apply(dilated.data(), small_mask.data(), 0, pd.size, 0, pd.size, tmp_);
    pd.y0 = pd.x0 = pd.size;
    for (int y = 0; y < pd.size; ++y)
      for (int x = 0; x < pd.size; ++x) {
        const uint8_t m = small_mask[static_cast<size_t>(y) * static_cast<size_t>(pd.size) + static_cast<size_t>(x)];
        if (m == 255 || (y == pd.half && x == pd.half)) pd.footprint.emplace_back(y - pd.half, x - pd.half);
        if (m == 0 && small_line[static_cast<size_t>(y) * static_cast<size_t>(pd.size) + static_cast<size_t>(x)] == 0)
          continue;
        pd.y0 = std::min(pd.y0, y);
        pd.y1 = std::max(pd.y1, y + 1);
        pd.x0 = std::min(pd.x0, x);
        pd.x1 = std::max(pd.x1, x + 1);
      }
    for (size_t i = 0; i < area; ++i) {
      pd.line.push_back(small_line[i] / 255.0);
      pd.mask.push_back(small_mask[i] / 255.0);
    }
    return pd;
  }

  // Visits the non-zero part of `pd`'s window drawn at (y, x), clipped to the canvas:
  // f(canvas index, window index); stops when f returns true and returns whether it did.
  template <class F>
  bool each(const Paddle& pd, int y, int x, F&& f) const {
    const int y0 = std::max(0, y - pd.half + pd.y0), y1 = std::min(n_, y - pd.half + pd.y1);
    const int x0 = std::max(0, x - pd.half + pd.x0), x1 = std::min(n_, x - pd.half + pd.x1);
    for (int yy = y0; yy < y1; ++yy) {
      const size_t c = at(yy, 0);
      const size_t w = static_cast<size_t>(yy - y + pd.half) * static_cast<size_t>(pd.size);
      for (int xx = x0; xx < x1; ++xx)
        if (f(c + static_cast<size_t>(xx), w + static_cast<size_t>(xx - x + pd.half))) return true;
    }
    return false;
  }

  void stamp(const Paddle& pd, int y, int x, double contrast) {
    each(pd, y, x, [&](size_t c, size_t w) {
      image_[c] = std::max(image_[c], static_cast<float>(pd.line[w] * contrast));
      return false;
    });
  }
  void merge(const Paddle& pd, int y, int x) {
    each(pd, y, x, [&](size_t c, size_t w) {
      const float v = static_cast<float>(pd.mask[w]);
      if (v > mask_[c]) {
        free_pixels_ -= mask_[c] <= 0.3f && v > 0.3f;
        mask_[c] = v;
      }
      return false;
    });
  }

  // The mask dilated by `disk` at (y, x): its largest value within the disk.
  float near_mask(int y, int x, const Disk& disk) const {
    float near = 0.0f;
    if (y >= disk.radius && y < n_ - disk.radius && x >= disk.radius && x < n_ - disk.radius) {
      const float* m = mask_.data() + at(y, x);
      for (const ptrdiff_t o : disk.flat) near = std::max(near, m[o]);
      return near;
    }
    for (const auto& [dy, dx] : disk.offsets)
      if (inside(y + dy, x + dx)) near = std::max(near, mask_[at(y + dy, x + dx)]);
    return near;
  }
  bool collides(const Paddle& pd, int y, int x) const {
    return each(pd, y, x, [&](size_t c, size_t w) { return mask_[c] + pd.mask[w] >= 1.8; });
  }
  // The same test against one paddle q drawn at (qy, qx) whose mask is not merged yet.
  bool overlaps(const Paddle& pd, int y, int x, const Paddle& q, int qy, int qx) const {
    return each(pd, y, x, [&](size_t c, size_t w) {
      const int yy = static_cast<int>(c) / n_ - qy + q.half, xx = static_cast<int>(c) % n_ - qx + q.half;
      if (yy < 0 || yy >= q.size || xx < 0 || xx >= q.size) return false;
      return q.mask[static_cast<size_t>(yy) * static_cast<size_t>(q.size) + static_cast<size_t>(xx)] + pd.mask[w] >=
             1.8;
    });
  }

  // Whether a paddle with footprint `fp` may start at (y, x): the mask, with a band `band` pixels
  // wide along the edges counted as occupied, is at most 0.3 under every footprint pixel.
  bool tail_free(int y, int x, const std::vector<std::pair<int, int>>& fp, int band) const {
    for (const auto& [dy, dx] : fp) {
      const int yy = y + dy, xx = x + dx;
      if (!inside(yy, xx)) continue;
      if (yy < band || yy >= n_ - band || xx < band || xx >= n_ - band) return false;
      if (mask_[at(yy, xx)] > 0.3f) return false;
    }
    return true;
  }

  void list_free(const std::vector<std::pair<int, int>>& fp, int band, std::vector<int>& out) const {
    out.clear();
    for (int y = band; y < n_ - band; ++y)
      for (int x = band; x < n_ - band; ++x)
        if (tail_free(y, x, fp, band)) out.push_back(static_cast<int>(at(y, x)));
  }

  // A tail for `pd` uniform among the free pixels; false when there are none. A distractor tries
  // uniform proposals first (accepting a free one is the same uniform choice) and lists the free
  // pixels only when they are scarce; the first target paddle always meets the fresh mask, so its
  // free pixels are listed once per orientation.
  bool sample_tail(Rng& rng, Paddle& pd, int band, bool distractor, int& ty, int& tx) {
    const std::vector<int>* tails = &free_;
    if (distractor) {
      for (int i = 0; i < kTailProposals; ++i) {
        const int y = static_cast<int>(rng.below(static_cast<uint64_t>(n_)));
        const int x = static_cast<int>(rng.below(static_cast<uint64_t>(n_)));
        if (tail_free(y, x, pd.footprint, band)) {
          ty = y;
          tx = x;
          return true;
        }
      }
      list_free(pd.footprint, band, free_);
    } else {
      if (!pd.has_target_tails) {
        list_free(pd.footprint, band, pd.target_tails);
        pd.has_target_tails = true;
      }
      tails = &pd.target_tails;
    }
    if (tails->empty()) return false;
    const int c = (*tails)[rng.below(tails->size())];
    ty = c / n_;
    tx = c % n_;
    return true;
  }

  int whole_degrees(Rng& rng, int lo, int hi) {
    return lo + static_cast<int>(rng.below(static_cast<uint64_t>(hi - lo)));
  }

  // Places the first paddle of a snake at a free tail (seed_snake / the first target seed).
  Seeded seed(Rng& rng, Snake& s, int band, bool distractor, double contrast) {
    const int L = p_.paddle_length;
    if (distractor && static_cast<double>(free_pixels_) < p_.stop_free_fraction * static_cast<double>(mask_.size()))
      return Seeded::Full;
    for (int trial = 0; trial < p_.paddle_tries; ++trial) {
      const double theta = whole_degrees(rng, -180, 180) * kPi / 180;
      Paddle& pd = paddle(theta);
      int ty, tx;
      if (!sample_tail(rng, pd, band, distractor, ty, tx)) return Seeded::Failed;
      const int hy = translate(ty, L, std::sin(theta)), hx = translate(tx, L, std::cos(theta));
      const double back = flip(theta);
      const int py = translate(hy, L + m_, std::sin(back)), px = translate(hx, L + m_, std::cos(back));
      if (!inside(hy, hx) || !inside(py, px)) continue;
      start(s, pd, ty, tx, py, px, theta, contrast);
      return Seeded::Ok;
    }
    return Seeded::Failed;
  }

  // The second target snake's first paddle: seed_distance from the first one's tail.
  bool seed_partner(Rng& rng, const Snake& a, Snake& s, double contrast) {
    const int L = p_.paddle_length;
    for (int trial = 0; trial < p_.paddle_tries; ++trial) {
      const double theta = whole_degrees(rng, -180, 180) * kPi / 180;
      const double phi = whole_degrees(rng, 0, 360) * kPi / 180;
      const int ty = static_cast<int>(std::nearbyint(a.tail_y + p_.seed_distance * std::sin(phi)));
      const int tx = static_cast<int>(std::nearbyint(a.tail_x + p_.seed_distance * std::cos(phi)));
      const int hy = translate(ty, L, std::sin(theta)), hx = translate(tx, L, std::cos(theta));
      const double back = flip(theta);
      const int py = translate(hy, L + m_, std::sin(back)), px = translate(hx, L + m_, std::cos(back));
      if (!inside(hy, hx) || !inside(py, px)) continue;
      start(s, paddle(theta), ty, tx, py, px, theta, contrast);
      return true;
    }
    return false;
  }

  void start(Snake& s, const Paddle& pd, int ty, int tx, int py, int px, double theta, double contrast) {
    strokes_.push_back({&pd, ty, tx, contrast, s.id});
    s.py = py;
    s.px = px;
    s.theta = theta;
    s.last = &pd;
    s.ly = s.tail_y = s.tip_y = ty;
    s.lx = s.tail_x = s.tip_x = tx;
  }

  // The candidate heads around P' (get_coords_cmf): the circle of radius r sampled at one-pixel
  // arc steps (360 / (2 pi r) degrees from 0), each point P' + r (sin a, cos a) truncated to a
  // pixel. P' is a pixel, so for points in the canvas (the others are dropped) that pixel is P' plus
  // the floor of the offset: the distinct offsets, sorted by (dy, dx) as numpy's unique sorts, are
  // the same for every P'.
  static std::vector<Offset> circle(int r) {
    const double step = 360.0 / (2 * r * kPi);
    const int samples = static_cast<int>(std::ceil(360.0 / step));
    std::vector<std::pair<int, int>> pts;
    for (int i = 0; i < samples; ++i) {
      const double a = i * step * kPi / 180;
      pts.emplace_back(static_cast<int>(std::floor(r * std::sin(a))), static_cast<int>(std::floor(r * std::cos(a))));
    }
    std::sort(pts.begin(), pts.end());
    pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
    std::vector<Offset> out;
    for (const auto& [dy, dx] : pts)
      out.push_back({dy, dx, std::atan2(static_cast<double>(dy), static_cast<double>(dx))});
    return out;
  }

  // The continuity weight max(cos(min(|turn| * continuity, pi/2)), 0)^2 of each circle point for a
  // snake heading in orientation `theta` (a whole degree or a circle point's angle, so few values).
  const std::vector<double>& turn_weights(double theta) {
    uint64_t key;
    std::memcpy(&key, &theta, sizeof key);
    auto& cache = turns_[static_cast<size_t>(mi_)];
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    std::vector<double> w;
    for (const Offset& o : circles_[static_cast<size_t>(mi_)]) {
      const double d = std::fabs(o.theta - theta);
      const double c = std::max(std::cos(std::min(std::min(d, 2 * kPi - d) * p_.continuity, 0.5 * kPi)), 0.0);
      w.push_back(c * c);
    }
    return cache.emplace(key, std::move(w)).first->second;
  }

  // One more paddle at the end of `s` (extend_snake); false at a dead end or after paddle_tries
  // colliding draws.
  bool extend(Rng& rng, Snake& s, double contrast) {
    const int L = p_.paddle_length;
    const int cy = translate(s.py, L + 2 * m_, std::sin(s.theta));
    const int cx = translate(s.px, L + 2 * m_, std::cos(s.theta));
    cand_.clear();
    for (const Offset& o : circles_[static_cast<size_t>(mi_)])
      if (inside(cy + o.dy, cx + o.dx)) cand_.push_back(&o);
    if (cand_.empty()) return false;
    const Disk& disk = small_disks_[static_cast<size_t>(mi_)];
    const std::vector<double>& turn = turn_weights(s.theta);
    const Offset* first = circles_[static_cast<size_t>(mi_)].data();
    cmf_.resize(cand_.size());
    double total = 0.0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      const double w = turn[static_cast<size_t>(cand_[i] - first)];
      if (w > 0) total += (1.0 - near_mask(cy + cand_[i]->dy, cx + cand_[i]->dx, disk)) * w;
      cmf_[i] = total;
    }
    if (total < 1e-4) return false;
    for (double& v : cmf_) v /= total;
    for (int trial = 0; trial < p_.paddle_tries; ++trial) {
      const double r = rng.uniform();
      size_t pick = 0;
      while (pick < cmf_.size() && cmf_[pick] - r <= 0) ++pick;
      if (pick == cmf_.size()) pick = 0;  // numpy's argmax of an all-false test
      const Offset& o = *cand_[pick];
      const int hy = cy + o.dy, hx = cx + o.dx;
      const Paddle& pd = paddle(flip(o.theta));
      if (collides(pd, hy, hx)) continue;
      if (s.partner != nullptr && overlaps(pd, hy, hx, *s.partner->last, s.partner->ly, s.partner->lx)) continue;
      strokes_.push_back({&pd, hy, hx, contrast, s.id});
      merge(*s.last, s.ly, s.lx);
      s.last = &pd;
      s.ly = s.tip_y = hy;
      s.lx = s.tip_x = hx;
      s.py = cy;
      s.px = cx;
      s.theta = o.theta;
      return true;
    }
    return false;
  }

  void reset() {
    strokes_.clear();
    mask_ = fresh_mask_;
    free_pixels_ = fresh_free_;
  }

  bool two_snakes(Rng& rng, Snake& a, Snake& b) {
    reset();
    const double contrast = p_.paddle_contrast * p_.snake_contrast;
    if (seed(rng, a, 2 * p_.seed_distance, false, contrast) != Seeded::Ok) return false;
    if (!seed_partner(rng, a, b, contrast)) return false;
    for (int k = 1; k < p_.contour_length; ++k)
      if (!extend(rng, a, contrast) || !extend(rng, b, contrast)) return false;
    merge(*a.last, a.ly, a.lx);
    merge(*b.last, b.ly, b.lx);
    return true;
  }

  void distractors(Rng& rng) {
    for (int i = 0; i < p_.distractor_snakes; ++i) {
      for (int attempt = 0; attempt < p_.distractor_tries; ++attempt) {
        saved_mask_ = mask_;
        const size_t saved_free = free_pixels_, saved_strokes = strokes_.size();
        Snake s;
        const Seeded r = seed(rng, s, 1, true, p_.snake_contrast);
        if (r == Seeded::Full) return;
        bool ok = r == Seeded::Ok;
        for (int k = 1; ok && k < p_.distractor_length; ++k) ok = extend(rng, s, p_.snake_contrast);
        if (ok) {
          merge(*s.last, s.ly, s.lx);
          break;
        }
        mask_.swap(saved_mask_);
        free_pixels_ = saved_free;
        strokes_.resize(saved_strokes);
      }
    }
  }

  void add_marker(int y, int x) {
    const int aa = p_.antialias, fn = n_ * aa;
    const int fy = y * aa, fx = x * aa;
    for (const auto& [dy, dx] : marker_disk_) {
      const int yy = fy + dy, xx = fx + dx;
      if (yy >= 0 && yy < fn && xx >= 0 && xx < fn)
        fine_[static_cast<size_t>(yy) * static_cast<size_t>(fn) + static_cast<size_t>(xx)] = 255;
    }
    // Only output pixels within the filter's reach of the disk can be non-zero.
    const int reach = static_cast<int>(std::ceil(p_.marker_radius)) + 4;
    const int y0 = std::max(0, y - reach), y1 = std::min(n_, y + reach + 1);
    const int x0 = std::max(0, x - reach), x1 = std::min(n_, x + reach + 1);
    marker_.apply(fine_.data(), marker_px_.data(), y0, y1, x0, x1, tmp_);
    for (int yy = y0; yy < y1; ++yy)
      for (int xx = x0; xx < x1; ++xx)
        image_[at(yy, xx)] = std::max(image_[at(yy, xx)], static_cast<float>(marker_px_[at(yy, xx)] / 255.0));
    for (const auto& [dy, dx] : marker_disk_) {
      const int yy = fy + dy, xx = fx + dx;
      if (yy >= 0 && yy < fn && xx >= 0 && xx < fn)
        fine_[static_cast<size_t>(yy) * static_cast<size_t>(fn) + static_cast<size_t>(xx)] = 0;
    }
  }

  static void bytescale(const std::vector<float>& src, double cmin, double scale, uint8_t* out) {
    for (size_t i = 0; i < src.size(); ++i)
      out[i] = static_cast<uint8_t>(std::clamp((src[i] - cmin) * scale, 0.0, 255.0) + 0.5);
  }

  Params p_;
  int n_;
  int mi_ = 0, m_ = 1;  // the image's margin (index into p_.margins, value)
  std::vector<Resampler> resamplers_;
  Resampler marker_;
  std::vector<std::pair<int, int>> marker_disk_;
  std::vector<Disk> small_disks_;                                         // radius m, per margin
  std::vector<std::vector<std::pair<int, int>>> large_disks_;             // radius m * antialias, per margin
  std::vector<std::unordered_map<uint64_t, Paddle>> paddles_;             // per margin, by orientation bits
  std::vector<std::unordered_map<uint64_t, std::vector<double>>> turns_;  // per margin, by orientation bits
  std::vector<Stroke> strokes_;
  std::vector<float> image_, mask_, saved_mask_, fresh_mask_;
  size_t free_pixels_ = 0, fresh_free_ = 0;  // mask values <= 0.3 now / in a fresh mask
  std::vector<uint8_t> fine_, marker_px_, tmp_;
  std::vector<int> free_;
  std::vector<std::vector<Offset>> circles_;  // per margin
  std::vector<const Offset*> cand_;
  std::vector<double> cmf_;
};

uint64_t stream_of(const Params& p, int split, size_t index) {
  const uint64_t res = p.resolution == 32 ? 0 : p.resolution == 64 ? 1 : p.resolution == 128 ? 2 : 3;
  const uint64_t contour = p.contour_length == 6 ? 0 : p.contour_length == 9 ? 1 : 2;
  return kStreamBase | res << 54 | contour << 52 | static_cast<uint64_t>(split) << 50 | static_cast<uint64_t>(index);
}

}  // namespace

int contour_length_of(const std::string& difficulty) {
  if (difficulty == "easy") return 6;
  if (difficulty == "medium") return 9;
  if (difficulty == "hard") return 14;
  LRA_FAIL(
      "pathfinder: difficulty must be \"easy\" (contour length 6, LRA's curv_baseline), \"medium\" (9, "
      "curv_contour_length_9) or \"hard\" (14, curv_contour_length_14), got \"{}\"",
      difficulty);
}

std::string difficulty_folder(int contour_length) {
  return contour_length == 6 ? "curv_baseline" : fmt::format("curv_contour_length_{}", contour_length);
}

Params params_for(int resolution, int contour_length) {
  LRA_CHECK(resolution == 32 || resolution == 64 || resolution == 128 || resolution == 256,
            "pathfinder: resolution must be 32, 64, 128 or 256 (LRA's pathfinder32..256), got {}", resolution);
  LRA_CHECK(contour_length == 6 || contour_length == 9 || contour_length == 14,
            "pathfinder: contour length must be 6, 9 or 14 (easy, medium, hard), got {}", contour_length);
  Params p;
  p.resolution = resolution;
  p.contour_length = contour_length;
  p.distractor_length = contour_length / 3;
  // pf32's builder divides with `//`; the others use `/`, which (as the released `2.0` metadata
  // shows) was float division: snakes2 then draws while isnake < 35 / 4.67, i.e. the ceiling, and
  // range(4.67 - 1) gives floor(4.67) paddles.
  const double dl = contour_length / 3.0;
  auto snakes = [&](int budget) { return static_cast<int>(std::ceil(budget / dl - 1e-9)); };
  auto float_field = [&] {
    std::string s = fmt::format("{}", dl);
    return s.find('.') == std::string::npos ? s + ".0" : s;
  };
  switch (resolution) {
    case 32:
      p.padding = 1;
      p.paddle_length = 2;
      p.paddle_thickness = 0.5;
      p.margins = {1};
      p.marker_radius = 1.5;
      p.seed_distance = 7;
      p.continuity = 1.0;
      p.snake_contrast = 2.0;
      p.paddle_contrast = 0.75;
      p.distractor_snakes = 20 / p.distractor_length;
      p.distractor_length_field = std::to_string(p.distractor_length);
      break;
    case 64:
      p.padding = 1;
      p.paddle_length = 5;
      p.paddle_thickness = 1.0;
      p.margins = {1};
      p.marker_radius = 2.5;
      p.seed_distance = 12;
      p.continuity = 1.8;
      p.snake_contrast = 0.8;
      p.paddle_contrast = 1.0;
      p.distractor_snakes = snakes(22);
      p.distractor_length_field = float_field();
      break;
    case 128:
      p.padding = 1;
      p.paddle_length = 5;
      p.paddle_thickness = 1.5;
      p.margins = {2, 3};
      p.marker_radius = 3.0;
      p.seed_distance = 20;
      p.continuity = 1.8;
      p.snake_contrast = 0.9;
      p.paddle_contrast = 1.0;
      p.distractor_snakes = snakes(35);
      p.distractor_length_field = float_field();
      break;
    default:
      p.padding = 22;
      p.paddle_length = 5;
      p.paddle_thickness = 2.0;
      p.margins = {3};
      p.marker_radius = 5.0;
      p.seed_distance = 27;
      p.continuity = 1.8;
      p.snake_contrast = 1.0;
      p.paddle_contrast = 1.0;
      p.distractor_snakes = snakes(30);
      p.distractor_length_field = float_field();
      break;
  }
  return p;
}

int draw_image(const Params& p, Rng& rng, uint8_t* out, int& margin, Trace* trace) {
  // Rendered paddles are reused across the images a thread draws with the same settings.
  thread_local std::unique_ptr<Drawer> drawer;
  if (!drawer || !same_params(drawer->params(), p)) drawer = std::make_unique<Drawer>(p);
  return drawer->draw(rng, out, margin, trace);
}

Dataset generate(uint64_t seed, const Params& p, const SplitSizes& sizes, bool progress) {
  LRA_CHECK(sizes.train >= 0 && sizes.val >= 0 && sizes.test >= 0,
            "Pathfinder split sizes must not be negative (train {}, val {}, test {})", sizes.train, sizes.val,
            sizes.test);
  params_for(p.resolution, p.contour_length);  // validates the resolution and contour length
  Dataset d;
  d.params = p;
  ImageSet* sets[3] = {&d.train, &d.val, &d.test};
  const int64_t counts[3] = {sizes.train, sizes.val, sizes.test};
  const size_t area = static_cast<size_t>(p.resolution) * static_cast<size_t>(p.resolution);
  for (int s = 0; s < 3; ++s) {
    const size_t n = static_cast<size_t>(counts[s]);
    sets[s]->resolution = p.resolution;
    sets[s]->pixels.resize(n * area);
    sets[s]->labels.resize(n);
    sets[s]->margins.resize(n);
  }
  const int64_t total = sizes.train + sizes.val + sizes.test;
  const int64_t report_every = std::max<int64_t>(1, total / 10);
  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  std::string error;
  const Timer timer;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t g = 0; g < total; ++g) {
    if (failed.load(std::memory_order_relaxed)) continue;
    int s = 0;
    int64_t i = g;
    while (i >= counts[s]) i -= counts[s++];
    ImageSet& set = *sets[s];
    try {
      Rng rng(seed, stream_of(p, s, static_cast<size_t>(i)));
      int margin = 0;
      set.labels[static_cast<size_t>(i)] =
          draw_image(p, rng, set.pixels.data() + static_cast<size_t>(i) * area, margin);
      set.margins[static_cast<size_t>(i)] = static_cast<uint8_t>(margin);
    } catch (const std::exception& e) {
#pragma omp critical(pathfinder_error)
      if (!failed.exchange(true)) error = e.what();
    }
    const int64_t k = ++done;
    if (progress && k % report_every == 0 && k < total) {
#pragma omp critical(pathfinder_progress)
      fmt::print(stderr, "  {}/{} images ({:.0f} images/s)\n", k, total, k / std::max(timer.seconds(), 1e-9));
    }
  }
  if (failed) throw Error(error);
  return d;
}

}  // namespace lra::pathfinder
