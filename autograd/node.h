// Node: one recorded op on the tape.
//
// A differentiable op that ran with grad mode on and an input requiring grad attaches a Node
// to its output (output.grad_fn). The node keeps, for each input, an Edge to that input's
// autograd slot (not its data), and a backward closure that maps the output's gradient to
// the inputs' gradients. The closure captures only what the rule needs (detached, so the
// tape holds no reference cycles).
//
// Writing a rule (see autograd/rules_*.cpp):
//
//   Tensor mul(const Tensor& a, const Tensor& b) {
//     Tensor out = core::mul(a, b);
//     if (autograd::should_record({&a, &b})) {
//       // y = a * b  =>  da = dy * b,  db = dy * a
//       autograd::record("mul", out, {a, b}, [a = detach(a), b = detach(b)](
//                            const Tensor& dy, const autograd::Needs& needs) -> TensorList {
//         return {needs[0] ? mul(dy, b) : Tensor(), needs[1] ? mul(dy, a) : Tensor()};
//       });
//     }
//     return out;
//   }
//
// The engine sums each input gradient down to the input's shape (undoing broadcasting) and
// casts it to the input's dtype, so rules may return broadcast-shaped gradients.
//
// The name ("mul") must be a rule of the derivative index in autograd/ops.h: record takes a
// RuleName, which only a string literal naming an indexed rule converts to, at compile time.
// A new rule therefore starts with its line in the index (and its gradcheck case, which
// tests/autograd/test_derivative_index.cpp asks for).
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

#include "autograd/ops.h"
#include "core/tensor.h"

namespace mnemo::autograd {

// needs[i]: whether input i wants a gradient (rules skip the work for the others).
using Needs = std::vector<bool>;
using BackwardFn = std::function<TensorList(const Tensor& grad_output, const Needs& needs)>;

struct Edge {
  std::shared_ptr<AutogradMeta> meta;  // null: the input needs no gradient
  Shape shape;
  DType dtype = DType::f32;
};

struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Frees the chain of nodes only this one keeps alive iteratively, so that dropping a tape
  // of a million ops does not recurse a million frames deep.
  ~Node();

  std::string_view name;  // the op, e.g. "mul" (a string literal)
  std::vector<Edge> inputs;
  BackwardFn backward;                 // empty once released (after backward without retain)
  std::weak_ptr<AutogradMeta> output;  // for hooks and retain_grad on non-leaf tensors
};

// The name of a rule, as the derivative index (autograd/ops.h) spells it. Converting from a
// name that is not a rule of the index does not compile ("not a constant expression").
class RuleName {
 public:
  consteval RuleName(const char* op) : op_(indexed_rule(op)) {}  // implicit: record("mul", ...)
  std::string_view str() const { return op_; }

 private:
  std::string_view op_;  // points into the index: lives as long as the program
};

// True if grad mode is on and some defined input requires grad.
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(const TensorList& inputs);

// Makes out the result of a node of rule `rule` with the given inputs (undefined inputs
// allowed: they get no edge). out becomes a non-leaf that requires grad.
void record(RuleName rule, const Tensor& out, const TensorList& inputs, BackwardFn fn);

}  // namespace mnemo::autograd
