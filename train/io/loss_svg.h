// write_loss_svg: a self-contained SVG line chart of training and validation loss.
//
// x is the step, y the loss (linear scales with "nice" 1-2-5 ticks and labels); the train
// curve is one blue <polyline>, the validation curve one orange <polyline> with a dot per
// evaluation; a legend names both. Each non-empty series gives exactly one polyline. Points
// whose step or loss is NaN/inf are left out (the legend counts them), so the file never
// contains "nan"; with no finite points at all the chart says "no data yet". Written
// atomically, so a browser refreshing the file never sees half a chart.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mnemo::io {

using LossCurve = std::vector<std::pair<int64_t, double>>;  // (step, loss)

void write_loss_svg(const std::string& path, const LossCurve& train, const LossCurve& val,
                    std::string_view title);

// The SVG text itself (write_loss_svg writes this).
std::string loss_svg(const LossCurve& train, const LossCurve& val, std::string_view title);

}  // namespace mnemo::io
