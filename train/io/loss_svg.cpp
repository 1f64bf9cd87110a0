// The loss chart (see loss_svg.h): data ranges, nice ticks, then SVG text.
#include "train/io/loss_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "train/io/files.h"

namespace mnemo::io {
namespace {

constexpr double kWidth = 800, kHeight = 450;
constexpr double kLeft = 72, kRight = 24, kTop = 44, kBottom = 56;  // margins around the plot
constexpr const char* kTrainColor = "#1f77b4";
constexpr const char* kValColor = "#ff7f0e";

struct Range {
  double lo = 0, hi = 1;
};

// The finite points of a curve, and how many were dropped.
std::vector<std::pair<double, double>> finite_points(const LossCurve& curve, int* dropped) {
  std::vector<std::pair<double, double>> points;
  for (const auto& [step, loss] : curve) {
    if (std::isfinite(loss) && std::fabs(loss) < 1e30) points.emplace_back(double(step), loss);
  }
  *dropped = int(curve.size() - points.size());  // also |loss| >= 1e30: it would flatten the rest
  return points;
}

// A 1, 2 or 5 times a power of ten close to span / 5.
double nice_step(double span) {
  double raw = span / 5;
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / power;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * power;
}

// Multiples of step within r (at most 50, so absurd ranges cannot loop for long).
std::vector<double> ticks(Range r, double step) {
  std::vector<double> out;
  double first = std::ceil(r.lo / step);
  for (int i = 0; i <= 50; ++i) {
    double t = (first + i) * step;
    if (t > r.hi + step * 1e-9) break;
    out.push_back(t);
  }
  return out;
}

std::string tick_label(double value, double step) {
  int decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
  if (std::fabs(value) < step * 1e-6) value = 0;  // no "-0.0"
  return fmt::format("{:.{}f}", value, decimals);
}

std::string escape_xml(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (uint8_t(c) >= 0x20 || c == '\t') out += c;  // control chars are invalid XML
    }
  }
  return out;
}

Range padded(double lo, double hi, double min_half_span) {
  if (hi - lo < 2 * min_half_span) {
    double mid = (lo + hi) / 2;
    return {mid - min_half_span, mid + min_half_span};
  }
  return {lo, hi};
}

}  // namespace

std::string loss_svg(const LossCurve& train, const LossCurve& val, std::string_view title) {
  int train_dropped = 0, val_dropped = 0;
  auto train_points = finite_points(train, &train_dropped);
  auto val_points = finite_points(val, &val_dropped);

  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto* points : {&train_points, &val_points}) {
    for (const auto& [x, y] : *points) {
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
    }
  }
  bool empty = train_points.empty() && val_points.empty();
  if (empty) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  Range xr = padded(x_lo, x_hi, 1);
  double y_margin = (y_hi - y_lo) * 0.05;
  Range yr = padded(y_lo - y_margin, y_hi + y_margin, std::max(std::fabs(y_hi) * 0.05, 1e-3));

  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - xr.lo) / (xr.hi - xr.lo) * plot_w; };
  auto py = [&](double y) { return kTop + (yr.hi - y) / (yr.hi - yr.lo) * plot_h; };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"26\" font-size=\"16\" text-anchor=\"middle\">{3}</text>\n",
      kWidth, kHeight, kWidth / 2, escape_xml(title));

  // Grid lines and tick labels.
  double x_step = std::max(1.0, nice_step(xr.hi - xr.lo));
  for (double t : ticks(xr, x_step)) {
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e0e0e0\"/>\n"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
        px(t), kTop, kTop + plot_h, kTop + plot_h + 18, tick_label(t, x_step));
  }
  double y_step = nice_step(yr.hi - yr.lo);
  for (double t : ticks(yr, y_step)) {
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e0e0e0\"/>\n"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
        kLeft, py(t), kLeft + plot_w, kLeft - 8, py(t) + 4, tick_label(t, y_step));
  }
  // Axes and their names.
  svg += fmt::format(
      "<rect x=\"{0}\" y=\"{1}\" width=\"{2}\" height=\"{3}\" fill=\"none\" stroke=\"#333\"/>\n"
      "<text x=\"{4}\" y=\"{5}\" text-anchor=\"middle\">step</text>\n"
      "<text x=\"18\" y=\"{6}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {6})\">loss"
      "</text>\n",
      kLeft, kTop, plot_w, plot_h, kLeft + plot_w / 2, kHeight - 12, kTop + plot_h / 2);
  if (empty) {
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data "
        "yet</text>\n",
        kLeft + plot_w / 2, kTop + plot_h / 2);
  }

  // The curves: one polyline per non-empty series; dots for val (and a lone train point).
  auto curve = [&](const std::vector<std::pair<double, double>>& points, const char* color,
                   bool dots) {
    if (points.empty()) return;
    std::string coords;
    for (const auto& [x, y] : points) coords += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    coords.pop_back();
    svg +=
        fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
                    color, coords);
    if (!dots && points.size() > 1) return;
    for (const auto& [x, y] : points) {
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(x),
                         py(y), color);
    }
  };
  curve(train_points, kTrainColor, false);
  curve(val_points, kValColor, true);

  // Legend, top right inside the plot.
  auto legend = [&](int row, const char* color, std::string_view name, int dropped) {
    double y = kTop + 16 + 18 * row;
    double x = kLeft + plot_w - 210;
    std::string label(name);
    if (dropped > 0) label += fmt::format(" ({} non-finite not shown)", dropped);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>\n"
        "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
        x, y, x + 22, color, x + 28, y + 4, label);
  };
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"44\" fill=\"white\" "
      "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
      kLeft + plot_w - 218, kTop + 4, 210);
  legend(0, kTrainColor, "train", train_dropped);
  legend(1, kValColor, "val", val_dropped);
  svg += "</svg>\n";
  return svg;
}

void write_loss_svg(const std::string& path, const LossCurve& train, const LossCurve& val,
                    std::string_view title) {
  write_file_atomic(path, loss_svg(train, val, title));
}

}  // namespace mnemo::io
