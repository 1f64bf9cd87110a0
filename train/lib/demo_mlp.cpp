// The demo-mlp training run (see demo_mlp.h): data, model, the gradient-descent loop.
#include "train/lib/demo_mlp.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <ostream>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"

namespace mnemo {

namespace {

struct Spiral {
  Tensor points;  // (K * n, 2) f32
  Tensor labels;  // (K * n,) i64
};

// K arms of n points each: point i of arm k sits at radius r = i / (n - 1) and angle
// 4r + 2pi k / K, plus N(0, 0.2^2) noise on the angle (the classic CS231n spiral).
Spiral make_spiral(int64_t classes, int64_t n, Generator& gen) {
  const int64_t total = classes * n;
  const std::vector<float> noise = randn({total}, {}, &gen).to_vector<float>();
  std::vector<float> xy(size_t(2 * total));
  std::vector<int64_t> labels(static_cast<size_t>(total));
  for (int64_t k = 0; k < classes; ++k) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = k * n + i;
      const double r = double(i) / double(n - 1);
      const double angle = 4 * r + 2 * std::numbers::pi * double(k) / double(classes) +
                           0.2 * double(noise[size_t(row)]);
      xy[size_t(2 * row)] = float(r * std::sin(angle));
      xy[size_t(2 * row + 1)] = float(r * std::cos(angle));
      labels[size_t(row)] = k;
    }
  }
  return {from_vector(xy, {total, 2}), from_vector(labels, {total})};
}

struct Layer {
  Tensor weight;  // (out, in)
  Tensor bias;    // (out,)
};

// He initialisation for ReLU layers: weight ~ N(0, 2 / in), bias = 0.
Layer make_layer(int64_t in, int64_t out, Generator& gen, Device device) {
  Tensor weight = to(mul(randn({out, in}, {}, &gen), std::sqrt(2.0 / double(in))), device);
  Tensor bias = zeros({out}, TensorOptions{}.with_device(device));
  weight.set_requires_grad();
  bias.set_requires_grad();
  return {weight, bias};
}

// x (N, 2) -> logits (N, K).
Tensor forward(const std::vector<Layer>& layers, Tensor x) {
  for (size_t i = 0; i < layers.size(); ++i) {
    x = linear(x, layers[i].weight, layers[i].bias);
    if (i + 1 < layers.size()) x = relu(x);
  }
  return x;
}

// p -= lr * dp for every parameter, then clear its gradient. Outside the tape.
void sgd_step(const std::vector<Layer>& layers, double lr) {
  NoGradGuard no_grad;
  for (const Layer& layer : layers) {
    for (const Tensor& p : {layer.weight, layer.bias}) {
      sub_(p, mul(p.grad(), lr));
      p.set_grad(Tensor());
    }
  }
}

// Fraction of rows whose largest logit is the label. logits (N, K), labels (N,).
double accuracy(const Tensor& logits, const Tensor& labels) {
  NoGradGuard no_grad;
  const double correct = core::sum(eq(argmax(logits, 1), labels)).item();
  return correct / double(labels.numel());
}

void check_options(const DemoMlpOptions& o) {
  MNEMO_CHECK(o.steps >= 1, "demo-mlp: steps must be at least 1, got {}", o.steps);
  MNEMO_CHECK(o.classes >= 2, "demo-mlp: classes must be at least 2, got {}", o.classes);
  MNEMO_CHECK(o.points_per_class >= 2, "demo-mlp: points per class must be at least 2, got {}",
              o.points_per_class);
  MNEMO_CHECK(o.hidden >= 1, "demo-mlp: hidden width must be at least 1, got {}", o.hidden);
  MNEMO_CHECK(o.learning_rate > 0 && std::isfinite(o.learning_rate),
              "demo-mlp: learning rate must be a positive number, got {}", o.learning_rate);
  MNEMO_CHECK(o.threads >= 0, "demo-mlp: threads must be at least 1, got {}", o.threads);
}

}  // namespace

DemoMlpResult run_demo_mlp(const DemoMlpOptions& o, std::ostream& out) {
  check_options(o);
  if (o.threads > 0) set_num_threads(o.threads);
  Generator gen(o.seed);
  const Spiral data = make_spiral(o.classes, o.points_per_class, gen);
  const Tensor x = to(data.points, o.device), y = to(data.labels, o.device);
  const std::vector<Layer> layers = {make_layer(2, o.hidden, gen, o.device),
                                     make_layer(o.hidden, o.hidden, gen, o.device),
                                     make_layer(o.hidden, o.classes, gen, o.device)};
  int64_t parameters = 0;
  for (const Layer& l : layers) parameters += l.weight.numel() + l.bias.numel();
  fmt::print(out,
             "demo-mlp: {}-arm spiral, {} points; MLP 2 -> {} -> {} -> {} ({} parameters), "
             "ReLU; full-batch SGD, lr {}; seed {}, {} thread{}, {}\n",
             o.classes, x.size(0), o.hidden, o.hidden, o.classes, parameters, o.learning_rate,
             o.seed, num_threads(), num_threads() == 1 ? "" : "s", o.device);

  const int64_t every = o.print_every > 0 ? o.print_every : std::max<int64_t>(1, o.steps / 20);
  DemoMlpResult result;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= o.steps; ++step) {
    const Tensor logits = forward(layers, x);
    const Tensor loss = cross_entropy(logits, y);
    backward(loss);
    sgd_step(layers, o.learning_rate);
    const double loss_value = loss.item();
    if (step == 1) result.first_loss = loss_value;
    if (step == 1 || step % every == 0 || step == o.steps) {
      result.final_accuracy = accuracy(logits, y);
      fmt::print(out, "step {:>6}  loss {:.4f}  accuracy {:.3f}\n", step, loss_value,
                 result.final_accuracy);
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The loss and accuracy of the trained model (the loop printed those before each update).
  {
    NoGradGuard no_grad;
    const Tensor logits = forward(layers, x);
    result.final_loss = cross_entropy(logits, y).item();
    result.final_accuracy = accuracy(logits, y);
  }
  fmt::print(out,
             "trained {} steps in {:.2f} s ({:.2f} ms/step): loss {:.4f} -> {:.4f}, "
             "accuracy {:.3f}\n",
             o.steps, result.seconds, 1e3 * result.seconds / double(o.steps), result.first_loss,
             result.final_loss, result.final_accuracy);
  return result;
}

}  // namespace mnemo
