// The capacity of one Titans memory (memory_capacity.h): random unit pairs streamed through
// the inner loop with fixed gates, the cosine of each stored pair's read-out.
#include "train/lib/memory_capacity.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ostream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/titans_memory.h"
#include "train/io/files.h"

namespace mnemo::train {

namespace {

using memory::MemoryModel;

// Random unit rows (G, n, D).
Tensor unit_rows(int64_t G, int64_t n, int64_t D, Generator& gen) {
  const Tensor x = normal({G, n, D}, 0.0, 1.0, {}, &gen);
  return x / sqrt(sum(x * x, {-1}, true));
}

// Mean cosine of rows a, b (G, n, D) over rows [from, from + count).
double mean_cosine(const Tensor& a, const Tensor& b, int64_t from, int64_t count) {
  const Tensor x = narrow(a, 1, from, count), y = narrow(b, 1, from, count);
  const Tensor cos = sum(x * y, {-1}) / sqrt(sum(x * x, {-1}) * sum(y * y, {-1}) + 1e-30);
  return mean(cos).item();
}

std::vector<nlohmann::json> capacity_of(const std::string& name, const CapacityOptions& o,
                                        std::ostream& log) {
  const MemoryModel model(memory::parse_memory_model(name, "'memory_model'"), o.head_dim);
  const int64_t G = o.trials, D = o.head_dim, c = o.chunk_size, N = o.max_pairs / c;
  Generator gen(o.seed);
  const Tensor keys = unit_rows(G, N * c, D, gen), values = unit_rows(G, N * c, D, gen);
  const Tensor W0 = model.initial_weights(G, {}, &gen);  // (G, P): one memory per trial
  memory::InnerState state{W0, zeros_like(W0), W0};
  std::vector<nlohmann::json> rows;
  int64_t stored = 0;  // chunks
  for (int64_t pairs = 4; pairs <= o.max_pairs; pairs *= 2) {
    if (pairs % c != 0) continue;
    // Store chunks [stored, pairs / c), online (each chunk its own update batch).
    const int64_t m = pairs / c - stored;
    memory::InnerChunks chunks;
    chunks.k = reshape(narrow(keys, 1, stored * c, m * c), {G, m, c, D});
    chunks.v = reshape(narrow(values, 1, stored * c, m * c), {G, m, c, D});
    chunks.theta = full({G, m, c}, o.theta);
    chunks.eta = full({G, m}, o.eta);
    chunks.alpha = full({G, m}, o.alpha);
    state = memory::inner_update(model, chunks, state, 0, 1).state;
    stored = pairs / c;
    // Read every stored key with W_N, in the chunks it was stored in.
    const Tensor read =
        memory::read_chunks(model, unsqueeze(state.weights, 1), narrow(keys, 1, 0, pairs), c);
    const Tensor want = narrow(values, 1, 0, pairs);
    // What the updates added: the read-out minus that of the initial weights (the MLP's
    // residual reads k itself before anything is stored).
    const Tensor added =
        read - memory::read_chunks(model, unsqueeze(W0, 1), narrow(keys, 1, 0, pairs), c);
    const int64_t quarter = std::max<int64_t>(1, pairs / 4);
    nlohmann::json row = {{"task", "capacity"},
                          {"memory_model", name},
                          {"pairs", pairs},
                          {"cosine", mean_cosine(read, want, 0, pairs)},
                          {"cosine_oldest", mean_cosine(read, want, 0, quarter)},
                          {"cosine_newest", mean_cosine(read, want, pairs - quarter, quarter)},
                          {"cosine_added", mean_cosine(added, want, 0, pairs)},
                          {"error", mean(sum((read - want) * (read - want), {-1})).item()},
                          {"theta", o.theta},
                          {"eta", o.eta},
                          {"alpha", o.alpha},
                          {"head_dim", D},
                          {"chunk_size", c},
                          {"trials", G},
                          {"seed", o.seed}};
    log << "memory-bench capacity: " << name << " " << pairs << " pairs: cosine "
        << row["cosine"].get<double>() << "\n";
    rows.push_back(std::move(row));
  }
  return rows;
}

double number_value(const std::string& key, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MNEMO_CHECK(used == text.size() && used > 0 && std::isfinite(v),
              "memory-bench capacity: --memory {} must be a number, got '{}'", key, text);
  return v;
}

int64_t integer_value(const std::string& key, const std::string& text, int64_t lo, int64_t hi) {
  const double v = number_value(key, text);
  MNEMO_CHECK(v == std::floor(v) && v >= double(lo) && v <= double(hi),
              "memory-bench capacity: --memory {} must be an integer in [{}, {}], got '{}'", key,
              lo, hi, text);
  return int64_t(v);
}

}  // namespace

void CapacityOptions::apply(const std::vector<std::string>& overrides) {
  for (const std::string& item : overrides) {
    const size_t eq = item.find('=');
    MNEMO_CHECK(eq != std::string::npos && eq > 0,
                "memory-bench capacity: --memory '{}' is not key=value", item);
    const std::string key = item.substr(0, eq), text = item.substr(eq + 1);
    if (key == "memory_model") {
      memory::parse_memory_model(text, "'memory_model'");
      models = {text};
    } else if (key == "head_dim") {
      head_dim = integer_value(key, text, 1, 4096);
    } else if (key == "theta") {
      theta = number_value(key, text);
    } else if (key == "eta") {
      eta = number_value(key, text);
    } else if (key == "alpha") {
      alpha = number_value(key, text);
    } else if (key == "chunk_size") {
      chunk_size = integer_value(key, text, 1, 1 << 16);
    } else if (key == "max_pairs") {
      max_pairs = integer_value(key, text, 4, 1 << 20);
    } else if (key == "trials") {
      trials = integer_value(key, text, 1, 1 << 16);
    } else {
      fail(
          "memory-bench capacity: unknown --memory key '{}' (it takes memory_model, head_dim, "
          "theta, eta, alpha, chunk_size, max_pairs, trials)",
          key);
    }
  }
  MNEMO_CHECK(theta >= 0 && eta >= 0 && eta <= 1 && alpha >= 0 && alpha <= 1,
              "memory-bench capacity: want theta >= 0 and eta, alpha in [0, 1], got {}, {}, {}",
              theta, eta, alpha);
}

std::vector<nlohmann::json> run_memory_capacity(const CapacityOptions& o, std::ostream& log) {
  NoGradGuard no_grad;
  std::vector<nlohmann::json> rows;
  std::vector<CapacitySeries> series;
  for (const std::string& name : o.models) {
    CapacitySeries s{name, {}};
    for (nlohmann::json& row : capacity_of(name, o, log)) {
      s.points.emplace_back(row["pairs"].get<int64_t>(), row["cosine"].get<double>());
      rows.push_back(std::move(row));
    }
    series.push_back(std::move(s));
  }
  if (!o.plot.empty()) {
    const std::string title =
        fmt::format("Titans memory capacity: D = {}, theta {}, eta {}, alpha {}, {} per chunk",
                    o.head_dim, o.theta, o.eta, o.alpha, o.chunk_size);
    io::write_file_atomic(o.plot, capacity_svg(series, title));
    log << "memory-bench capacity: chart written to " << o.plot << "\n";
  }
  return rows;
}

std::string capacity_svg(const std::vector<CapacitySeries>& series, const std::string& title) {
  constexpr double W = 640, H = 400, left = 60, right = 130, top = 40, bottom = 50;
  constexpr const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"};
  int64_t lo = 0, hi = 0;
  double y_lo = 0;
  for (const auto& s : series) {
    for (const auto& [n, y] : s.points) {
      lo = lo == 0 ? n : std::min(lo, n);
      hi = std::max(hi, n);
      if (std::isfinite(y)) y_lo = std::min(y_lo, std::floor(y * 5) / 5);
    }
  }
  const double x0 = std::log2(double(std::max<int64_t>(lo, 1)));
  const double x1 = std::max(x0 + 1, std::log2(double(std::max<int64_t>(hi, 1))));
  auto px = [&](double n) { return left + (std::log2(n) - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (1.0 - y) / (1.0 - y_lo) * (H - top - bottom); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"14\">{}</text>\n",
      W, H, left, title);
  for (double y = y_lo; y <= 1.0 + 1e-9; y += 0.2) {  // y grid
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}</text>\n",
        left, W - right, py(y), py(y), left - 6, py(y) + 4, y);
  }
  for (int64_t n = std::max<int64_t>(lo, 1); n <= hi; n *= 2) {  // x ticks at powers of two
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       px(double(n)), H - bottom + 18, n);
  }
  svg += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">pairs stored</text>\n<text x=\"14\" "
      "y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">mean cosine of M(k) "
      "with v</text>\n",
      (left + W - right) / 2, H - 12, (top + H - bottom) / 2, (top + H - bottom) / 2);
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = colors[i % std::size(colors)];
    std::string points;
    for (const auto& [n, y] : series[i].points) {
      if (std::isfinite(y)) points += fmt::format("{:.1f},{:.1f} ", px(double(n)), py(y));
    }
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n"
        "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n",
        color, points, W - right + 10, top + 16 * double(i + 1), color, series[i].name);
  }
  return svg + "</svg>\n";
}

}  // namespace mnemo::train
