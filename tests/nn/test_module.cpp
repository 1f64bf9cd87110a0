// Module: names, tied parameters, state_dict round trips and errors, modes, zero_grad, to().
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

// A two-level module with a tied parameter and both kinds of buffers.
struct Inner : Module {
  Inner() {
    w = register_parameter("w", ones({2, 3}));
    register_buffer("count", zeros({1}, {DType::i64}));
    register_buffer("scratch", zeros({4}), /*persistent=*/false);
  }
  Tensor w;
};

struct Outer : Module {
  Outer() {
    a = register_module("a", std::make_shared<Inner>());
    list = register_module("blocks", std::make_shared<ModuleList>());
    list->append(std::make_shared<Linear>(3, 2));
    list->append(std::make_shared<Linear>(2, 2, false));
    tied = register_parameter("tied", a->w);  // the same tensor under a second name
  }
  std::shared_ptr<Inner> a;
  std::shared_ptr<ModuleList> list;
  Tensor tied;
};

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> names;
  for (const auto& [name, t] : named) names.push_back(name);
  return names;
}

// PyTorch's order: a module's own tensors first, then its children's in registration order.
TEST_CASE("Module: dotted names in PyTorch order, tied parameters listed once") {
  Outer m;
  CHECK(names_of(m.named_parameters()) ==
        std::vector<std::string>{"tied", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight"});
  CHECK(names_of(m.state_dict()) == std::vector<std::string>{"tied", "a.w", "a.count",
                                                             "blocks.0.weight", "blocks.0.bias",
                                                             "blocks.1.weight"});
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"a.count", "a.scratch"});
  CHECK(m.num_parameters() == 6 + 6 + 2 + 4);
  CHECK(m.parameters().size() == 4);
  for (const Tensor& p : m.parameters()) CHECK(p.requires_grad());
  check_error([&] { m.register_parameter("tied", ones({1})); }, {"'tied'", "already"});
  check_error([&] { m.register_parameter("x.y", ones({1})); }, {"'x.y'"});
}

TEST_CASE("Module: load_state_dict copies in place, converts dtype, names bad keys") {
  Outer src, dst;
  {
    NoGradGuard no_grad;
    for (const Tensor& p : src.parameters()) copy_(p, randn(p.shape()));
  }
  NamedTensors state = src.state_dict();
  for (auto& [name, t] : state) {
    if (is_floating(t.dtype())) t = to(t, DType::f64);  // converted back on load
  }
  const Tensor handle = dst.list->named_children()[0].second->parameters()[0];
  dst.load_state_dict(state);
  const NamedTensors a = src.state_dict(), b = dst.state_dict();
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(b[i].second.dtype() == a[i].second.dtype());
    CHECK(max_abs_diff(a[i].second, b[i].second) == 0);
  }
  CHECK(max_abs_diff(handle, src.state_dict()[3].second) == 0);  // same impl, new values

  NamedTensors missing(state.begin(), state.end() - 1);
  check_error([&] { dst.load_state_dict(missing); }, {"missing key 'blocks.1.weight'"});
  dst.load_state_dict(missing, /*strict=*/false);
  NamedTensors extra = state;
  extra.emplace_back("bogus.weight", ones({1}));
  check_error([&] { dst.load_state_dict(extra); }, {"unexpected key 'bogus.weight'"});
  NamedTensors wrong = state;
  wrong[3].second = ones({3, 3});
  check_error([&] { dst.load_state_dict(wrong); }, {"'blocks.0.weight'", "(3, 3)", "(2, 3)"});
}

TEST_CASE("Module: train/eval propagate, zero_grad clears, to(dtype) converts in place") {
  Outer m;
  CHECK(m.is_training());
  m.eval();
  CHECK(!m.is_training());
  CHECK(!m.a->is_training());
  CHECK(!m.list->named_children()[1].second->is_training());
  m.train();
  CHECK(m.list->named_children()[1].second->is_training());

  auto lin = std::static_pointer_cast<Linear>(m.list->named_children()[0].second);
  backward(sum(lin->forward(ones({4, 3}))));
  CHECK(lin->weight.grad().defined());
  m.zero_grad();
  CHECK(!lin->weight.grad().defined());

  const std::vector<double> before = lin->weight.to_vector<double>();
  m.to(DType::f64);
  CHECK(lin->weight.dtype() == DType::f64);  // the member handle sees the change
  CHECK(m.tied.dtype() == DType::f64);
  CHECK(m.named_buffers()[0].second.dtype() == DType::i64);  // integer buffers untouched
  CHECK(lin->weight.to_vector<double>() == before);
  CHECK(lin->weight.requires_grad());
}

}  // namespace
}  // namespace mnemo::nn
