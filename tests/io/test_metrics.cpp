// metrics.jsonl (append, truncate_after, read), the loss SVG, and the progress line.
#include "train/io/metrics.h"

#include <doctest/doctest.h>

#include <cmath>
#include <regex>

#include "io/temp_dir.h"
#include "train/io/files.h"

namespace mnemo::io {
namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The (x, y) pairs of every polyline, in order.
std::vector<std::vector<std::pair<double, double>>> polylines(const std::string& svg) {
  std::vector<std::vector<std::pair<double, double>>> result;
  std::regex polyline("<polyline[^>]* points=\"([^\"]*)\"");
  std::regex pair("(-?[0-9.]+),(-?[0-9.]+)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), polyline);
       it != std::sregex_iterator(); ++it) {
    std::string points = (*it)[1];
    result.emplace_back();
    for (auto p = std::sregex_iterator(points.begin(), points.end(), pair);
         p != std::sregex_iterator(); ++p) {
      result.back().emplace_back(std::stod((*p)[1]), std::stod((*p)[2]));
    }
  }
  return result;
}

void check_well_formed(const std::string& svg) {
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.size() >= 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  std::string lower = svg;
  for (char& c : lower) c = char(std::tolower(uint8_t(c)));
  CHECK(lower.find("nan") == std::string::npos);
  CHECK(lower.find("inf") == std::string::npos);
  CHECK(count(svg, "<") == count(svg, ">"));
  CHECK(count(svg, "<text") == count(svg, "</text>"));
}

}  // namespace

TEST_CASE("metrics: lines append, truncate_after drops later steps and torn lines") {
  testing::TempDir dir;
  {
    MetricsLog log(dir.path() + "/run");
    for (int64_t step = 1; step <= 5; ++step) {
      log.write({{"step", step}, {"loss", 5.0 - double(step)}});
      if (step % 2 == 0) log.write({{"step", step}, {"val_loss", 4.0}});
    }
    log.write({{"event", "no step"}});
    log.write({{"step", 6}, {"loss", NAN}});
  }
  std::string path = dir.path() + "/run/metrics.jsonl";
  std::string text = read_file(path);
  CHECK(count(text, "\n") == 9);
  CHECK(text.find("{\"loss\":4.0,\"step\":1}\n") == 0);                 // compact, one per line
  CHECK(text.find("{\"loss\":null,\"step\":6}") != std::string::npos);  // NaN stays valid JSON

  testing::write_bytes(path, text + "{\"step\": 7, \"lo");  // a line torn by a crash
  CHECK(MetricsLog::read(path).size() == 9);
  MetricsLog::truncate_after(path, 3);
  auto records = MetricsLog::read(path);
  REQUIRE(records.size() == 5);  // steps 1, 2, 2 (val), 3 and the line without a step
  for (const auto& r : records) {
    if (r.contains("step")) CHECK(r["step"].get<int64_t>() <= 3);
  }
  CHECK(records[4]["event"] == "no step");
  {
    MetricsLog log(dir.path() + "/run");  // resumes appending after the kept lines
    log.write({{"step", 4}, {"loss", 0.5}});
  }
  CHECK(MetricsLog::read(path).size() == 6);
  MetricsLog::truncate_after(dir.path() + "/none.jsonl", 3);  // missing: nothing to do
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/none.jsonl"));
}

TEST_CASE("loss svg: two curves inside the plot, well formed") {
  LossCurve train, val;
  for (int64_t s = 0; s <= 100; s += 5) train.emplace_back(s, 5.0 * std::exp(-double(s) / 40));
  for (int64_t s = 0; s <= 100; s += 25) val.emplace_back(s, 5.2 * std::exp(-double(s) / 40));
  std::string svg = loss_svg(train, val, "demo <run> & co");
  check_well_formed(svg);
  CHECK(svg.find("demo &lt;run&gt; &amp; co") != std::string::npos);
  auto lines = polylines(svg);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].size() == train.size());
  CHECK(lines[1].size() == val.size());
  CHECK(count(svg, "<circle") == val.size());
  for (const auto& line : lines) {
    for (size_t i = 0; i < line.size(); ++i) {
      CHECK(line[i].first >= 0);
      CHECK(line[i].first <= 800);
      CHECK(line[i].second >= 0);
      CHECK(line[i].second <= 450);
      if (i > 0) CHECK(line[i].first > line[i - 1].first);    // step grows to the right
      if (i > 0) CHECK(line[i].second > line[i - 1].second);  // falling loss goes down
    }
  }
  CHECK(svg.find(">100<") != std::string::npos);  // an x tick label at the last step
  CHECK(svg.find(">train<") != std::string::npos);
  CHECK(svg.find(">val<") != std::string::npos);
}

TEST_CASE("loss svg: no points, one point, NaN and inf") {
  std::string empty = loss_svg({}, {}, "t");
  check_well_formed(empty);
  CHECK(polylines(empty).empty());
  CHECK(empty.find("no data") != std::string::npos);

  std::string one = loss_svg({{10, 2.5}}, {}, "t");
  check_well_formed(one);
  CHECK(polylines(one).size() == 1);
  CHECK(count(one, "<circle") == 1);  // a lone point is visible

  std::string flat = loss_svg({{1, 3.0}, {2, 3.0}}, {{2, 3.0}}, "t");
  check_well_formed(flat);
  CHECK(polylines(flat).size() == 2);

  LossCurve bad = {{1, 4.0}, {2, NAN}, {3, INFINITY}, {4, -INFINITY}, {5, 3.0}};
  std::string svg = loss_svg(bad, {{5, NAN}}, "t");
  check_well_formed(svg);
  auto lines = polylines(svg);
  REQUIRE(lines.size() == 1);  // val has no finite point
  CHECK(lines[0].size() == 2);
  CHECK(svg.find("3 non-finite not shown") != std::string::npos);

  testing::TempDir dir;
  write_loss_svg(dir / "loss.svg", bad, {}, "t");
  CHECK(read_file(dir / "loss.svg") == loss_svg(bad, {}, "t"));
}

TEST_CASE("progress: plain lines every N steps, TTY line redrawn and rate limited") {
  FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  auto contents = [&] {
    std::fflush(out);
    std::string text;
    std::rewind(out);
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), out)) > 0) text.append(buffer, n);
    return text;
  };
  {
    Progress plain(10, 3, out, Progress::Mode::plain);
    CHECK_FALSE(plain.is_tty());
    for (int64_t step = 1; step <= 10; ++step) plain.update(step, 2.0, 1500);
    plain.finish();
  }
  std::string text = contents();
  CHECK(count(text, "\n") == 4);  // steps 3, 6, 9 and the last
  CHECK(count(text, "\r") == 0);
  CHECK(text.find("step  3/10  loss 2.0000  1.5k tok/s  ETA ") == 0);
  CHECK(text.find("step 10/10") != std::string::npos);

  FILE* tty_out = std::tmpfile();
  std::swap(out, tty_out);
  {
    Progress tty(1000, 100, out, Progress::Mode::tty);
    for (int64_t step = 1; step <= 1000; ++step) tty.update(step, 1.0, 10);
    tty.message("eval: val_loss 1.0");
    tty.finish();
    tty.finish();  // idempotent
  }
  text = contents();
  size_t redraws = count(text, "\r");
  CHECK(redraws >= 2);   // the first and the last step at least
  CHECK(redraws < 100);  // 1000 fast updates do not redraw 1000 times
  CHECK(text.find("step 1000/1000 [########################] 100%") != std::string::npos);
  CHECK(text.find("eval: val_loss 1.0\n") != std::string::npos);
  CHECK(text.back() == '\n');
  std::fclose(out);
  std::fclose(tty_out);

  CHECK(format_duration(42) == "42s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(3720) == "1h02m");
  CHECK(format_duration(NAN) == "?");
  CHECK(format_count(950) == "950");
  CHECK(format_count(12345) == "12.3k");
}

}  // namespace mnemo::io
