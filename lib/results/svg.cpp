#include "results/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "results/collection.h"

namespace lra {

namespace {

constexpr double kPanelW = 440, kPanelH = 300;
constexpr double kLeft = 64, kRight = 18, kTop = 30, kBottom = 48;
constexpr double kLegendItemW = 180, kLegendRowH = 18;

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;

  double unit(double v) const {  // 0..1 along the axis
    return log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
  }
};

bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// Ticks at 1, 2 or 5 times a power of ten, about five of them, with the range widened to whole ticks.
Axis linear_axis(double lo, double hi) {
  Axis a;
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = std::fabs(lo) > 0 ? 0.1 * std::fabs(lo) : 1.0;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / 5;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / p < 1.5 ? p : raw / p < 3.5 ? 2 * p : raw / p < 7.5 ? 5 * p : 10 * p;
  a.lo = std::floor(lo / step) * step;
  a.hi = std::ceil(hi / step) * step;
  for (double t = a.lo; t <= a.hi + step * 1e-9; t += step) a.ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return a;
}

// The data's range widened by 15% either way, ticks at 1, 2 and 5 times powers of ten inside it (every
// integer multiple when those are fewer than three).
Axis log_axis(double lo, double hi) {
  Axis a;
  a.log = true;
  a.lo = lo / 1.15;
  a.hi = hi * 1.15;
  for (const auto& mults : {std::vector<double>{1, 2, 5}, std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    a.ticks.clear();
    for (int d = static_cast<int>(std::floor(std::log10(a.lo))); d <= static_cast<int>(std::ceil(std::log10(a.hi)));
         ++d)
      for (double m : mults) {
        const double t = m * std::pow(10.0, d);
        if (t >= a.lo && t <= a.hi) a.ticks.push_back(t);
      }
    if (a.ticks.size() >= 3) break;
  }
  return a;
}

// Given ticks, with the range widened by 5% of their span either way.
Axis fixed_axis(const std::vector<double>& ticks, double lo, double hi) {
  Axis a;
  a.ticks = ticks;
  lo = std::min(lo, *std::min_element(ticks.begin(), ticks.end()));
  hi = std::max(hi, *std::max_element(ticks.begin(), ticks.end()));
  const double pad = hi > lo ? 0.05 * (hi - lo) : 1.0;
  a.lo = lo - pad;
  a.hi = hi + pad;
  return a;
}

struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

std::string tick_label(double v) {
  const double a = std::fabs(v);
  if (a >= 1e5 || (a > 0 && a < 1e-3)) return fmt::format("{:.0e}", v);
  return fmt::format("{:g}", v);
}

std::string num(double v) { return fmt::format("{:.1f}", v); }

std::string panel_svg(const PlotPanel& p, double ox) {
  const double x0 = ox + kLeft, x1 = ox + kPanelW - kRight, y0 = kTop, y1 = kPanelH - kBottom;
  std::string s =
      fmt::format(R"(<text x="{}" y="18" class="title">{}</text>)", num(ox + kPanelW / 2), xml_escape(p.title));
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const auto& se : p.series)
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i)
      if (usable(se.x[i], p.logx) && usable(se.y[i], p.logy)) {
        xlo = std::min(xlo, se.x[i]);
        xhi = std::max(xhi, se.x[i]);
        ylo = std::min(ylo, se.y[i]);
        yhi = std::max(yhi, se.y[i]);
      }
  s += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" class="frame"/>)", num(x0), num(y0), num(x1 - x0),
                   num(y1 - y0));
  if (!std::isfinite(xlo)) {
    s += fmt::format(R"(<text x="{}" y="{}" class="empty">{}</text>)", num((x0 + x1) / 2), num((y0 + y1) / 2),
                     xml_escape(p.empty_note));
    return s;
  }
  if (p.scatter) {  // room for the markers and their labels
    const double dx = p.logx ? 0 : 0.08 * std::max(xhi - xlo, std::fabs(xhi) * 0.1);
    const double dy = p.logy ? 0 : 0.08 * std::max(yhi - ylo, std::fabs(yhi) * 0.1);
    xlo -= dx;
    xhi += dx;
    ylo -= dy;
    yhi += dy;
  }
  const Axis ax = !p.xticks.empty() ? fixed_axis(p.xticks, xlo, xhi)
                  : p.logx          ? log_axis(xlo, xhi)
                                    : linear_axis(xlo, xhi);
  const Axis ay = p.logy ? log_axis(ylo, yhi) : linear_axis(ylo, yhi);
  auto X = [&](double v) { return x0 + ax.unit(v) * (x1 - x0); };
  auto Y = [&](double v) { return y1 - ay.unit(v) * (y1 - y0); };
  for (double t : ax.ticks)
    s += fmt::format(R"(<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="grid"/><text x="{0}" y="{3}" class="tick" )"
                     R"(text-anchor="middle">{4}</text>)",
                     num(X(t)), num(y0), num(y1), num(y1 + 15), xml_escape(tick_label(t)));
  for (double t : ay.ticks)
    s += fmt::format(R"(<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" class="grid"/><text x="{3}" y="{4}" class="tick" )"
                     R"(text-anchor="end">{5}</text>)",
                     num(x0), num(Y(t)), num(x1), num(x0 - 5), num(Y(t) + 4), xml_escape(tick_label(t)));
  s += fmt::format(R"(<text x="{}" y="{}" class="label" text-anchor="middle">{}</text>)", num((x0 + x1) / 2),
                   num(kPanelH - 10), xml_escape(p.xlabel + (p.logx ? " (log scale)" : "")));
  s += fmt::format(R"svg(<text x="{0}" y="{1}" class="label" text-anchor="middle" transform="rotate(-90 {0} {1})">)svg"
                   "{2}</text>",
                   num(ox + 16), num((y0 + y1) / 2), xml_escape(p.ylabel + (p.logy ? " (log scale)" : "")));
  std::vector<Box> placed;  // markers, then the labels drawn so far: a label avoids them all
  if (p.scatter)
    for (const auto& se : p.series)
      for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i)
        if (usable(se.x[i], p.logx) && usable(se.y[i], p.logy)) {
          const double r = i < se.radius.size() ? se.radius[i] : 4.0;
          placed.push_back({X(se.x[i]) - r, Y(se.y[i]) - r, X(se.x[i]) + r, Y(se.y[i]) + r});
        }
  for (const auto& se : p.series) {
    std::string pts;
    std::vector<size_t> idx;
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i)
      if (usable(se.x[i], p.logx) && usable(se.y[i], p.logy)) idx.push_back(i);
    const std::string dash = se.dash.empty() ? "" : fmt::format(R"( stroke-dasharray="{}")", se.dash);
    if (!p.scatter) {
      for (size_t i : idx) pts += fmt::format("{},{} ", num(X(se.x[i])), num(Y(se.y[i])));
      if (!pts.empty()) pts.pop_back();
      if (idx.size() > 1)
        s += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{}><title>{}</title>)"
                         R"(</polyline>)",
                         pts, se.color, dash, xml_escape(se.label));
    }
    for (size_t i : idx) {
      if (!p.scatter && idx.size() > 1) continue;
      const double r = i < se.radius.size() ? se.radius[i] : (p.scatter ? 4.0 : 3.0);
      const std::string label = i < se.point_labels.size() ? se.point_labels[i] : se.label;
      const double cx = X(se.x[i]), cy = Y(se.y[i]);
      s += fmt::format(R"(<circle cx="{}" cy="{}" r="{}" fill="{}" fill-opacity="0.55" stroke="{}"><title>{}: )"
                       R"({}, {}</title></circle>)",
                       num(cx), num(cy), num(r), se.color, se.color, xml_escape(label), tick_label(se.x[i]),
                       tick_label(se.y[i]));
      if (!p.scatter) continue;
      // Right of the marker, else above or below it, else left of it: the first place free of other labels.
      const double w = 6.0 * static_cast<double>(label.size()), h = 12;
      const std::pair<double, double> tries[] = {
          {cx + r + 3, cy + 4},     {cx + r + 3, cy - 8},      {cx + r + 3, cy + 16}, {cx - r - 3 - w, cy + 4},
          {cx - w / 2, cy - r - 4}, {cx - w / 2, cy + r + 12}, {cx + r + 3, cy - 20}, {cx + r + 3, cy + 28}};
      std::pair<double, double> at = tries[0];
      for (const auto& t : tries) {
        const Box b{t.first, t.second - h + 2, t.first + w, t.second + 2};
        const bool inside = b.x0 >= x0 && b.x1 <= x1 + kRight && b.y0 >= y0 && b.y1 <= y1;
        if (inside && std::none_of(placed.begin(), placed.end(), [&](const Box& o) { return o.overlaps(b); })) {
          at = t;
          break;
        }
      }
      placed.push_back({at.first, at.second - h + 2, at.first + w, at.second + 2});
      s += fmt::format(R"(<text x="{}" y="{}" class="point">{}</text>)", num(at.first), num(at.second),
                       xml_escape(label));
    }
  }
  return s;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string variant_color(const std::string& attn) {
  // Matplotlib's ten colours, then four darker ones: distinct on white, in the order of LRA's rows.
  static const char* const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                        "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#d4a017", "#637939", "#ad494a"};
  const auto order = report_attention_order();
  const auto it = std::find(order.begin(), order.end(), attn);
  size_t i = it != order.end() ? static_cast<size_t>(it - order.begin()) : std::hash<std::string>{}(attn);
  return palette[i % (sizeof palette / sizeof palette[0])];
}

std::string svg_plot(const std::vector<PlotPanel>& panels, const std::string& title, bool legend) {
  std::vector<const PlotSeries*> entries;
  if (legend)
    for (const auto& p : panels)
      for (const auto& se : p.series)
        if (std::none_of(entries.begin(), entries.end(), [&](const PlotSeries* e) { return e->label == se.label; }))
          entries.push_back(&se);
  const double width = kPanelW * static_cast<double>(panels.size());
  const size_t per_row = std::max<size_t>(1, static_cast<size_t>(width / kLegendItemW));
  const size_t legend_rows = (entries.size() + per_row - 1) / per_row;
  const double height = kPanelH + (legend_rows > 0 ? 8 + kLegendRowH * static_cast<double>(legend_rows) : 0);
  std::string s = fmt::format(R"(<svg width="{0}" height="{1}" viewBox="0 0 {0} {1}" role="img" aria-label="{2}">)",
                              num(width), num(height), xml_escape(title));
  s += fmt::format("<title>{}</title>", xml_escape(title));
  for (size_t i = 0; i < panels.size(); ++i) s += panel_svg(panels[i], kPanelW * static_cast<double>(i));
  for (size_t i = 0; i < entries.size(); ++i) {
    const double x = 12 + kLegendItemW * static_cast<double>(i % per_row);
    const double y = kPanelH + 8 + kLegendRowH * static_cast<double>(i / per_row);
    const std::string dash = entries[i]->dash.empty() ? "" : fmt::format(R"( stroke-dasharray="{}")", entries[i]->dash);
    s += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2.5"{}/>)", num(x), num(y + 5),
                     num(x + 24), num(y + 5), entries[i]->color, dash);
    s += fmt::format(R"(<text x="{}" y="{}" class="legend">{}</text>)", num(x + 30), num(y + 9),
                     xml_escape(entries[i]->label));
  }
  return s + "</svg>";
}

}  // namespace lra
