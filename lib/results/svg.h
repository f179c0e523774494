// Plots as inline SVG for the HTML report: line charts and labelled scatter plots, panels side by side
// with a shared legend; plain SVG elements only (no scripts, no fonts or files from elsewhere).
#pragma once

#include <string>
#include <vector>

namespace lra {

struct PlotSeries {
  std::string label, color;
  std::string dash;  // stroke-dasharray, empty = solid
  std::vector<double> x, y;
  std::vector<double> radius;             // scatter: marker radius (px) per point; empty = 4
  std::vector<std::string> point_labels;  // scatter: text beside each point
};

struct PlotPanel {
  std::string title, xlabel, ylabel;
  bool logx = false, logy = false;
  bool scatter = false;        // markers (with point_labels) instead of lines
  std::vector<double> xticks;  // ticks at these x values instead of computed ones (e.g. the lengths measured)
  std::vector<PlotSeries> series;
  std::string empty_note = "nothing to plot";  // shown when no series has a finite point
};

// One <svg> element: the panels in a row, then (when `legend`) one entry per distinct series label.
std::string svg_plot(const std::vector<PlotPanel>& panels, const std::string& title, bool legend);

// A fixed colour per attention variant, the same in every figure.
std::string variant_color(const std::string& attn);

// Escapes &, <, >, " and ' for XML text and attributes.
std::string xml_escape(const std::string& s);

}  // namespace lra
