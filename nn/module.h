// Module: the base class of every layer — a named tree of parameters, buffers and children.
//
// A layer registers what it owns in its constructor:
//   weight = register_parameter("weight", normal({out, in}, 0, 0.02));   // trainable
//   register_buffer("cos_cached", table, /*persistent=*/false);          // state, no grad
//   q_proj = register_module("q_proj", std::make_shared<Linear>(C, C));   // a child
// and keeps the returned handles as members. A Tensor is a shared handle, so the member and
// the registry point at the same TensorImpl: load_state_dict and to() change the data in
// place (they swap the impl's storage), and every holder sees the new values.
//
// Names are dotted paths, ordered as in PyTorch: a module's own parameters (then, in
// state_dict, its persistent buffers) in registration order, then each child's, recursively.
// A child "layers.0" holding "self_attn" holding "q_proj" gives "layers.0.self_attn.q_proj.weight".
// A tensor registered under two names (tied weights) is one parameter: named_parameters()
// lists it once under its first name, while state_dict() lists every name.
//
// Modules are held by std::shared_ptr and never copied (a copy would silently share or split
// parameters); make a fresh instance and load_state_dict to duplicate one.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mnemo::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration (call from the constructor of a subclass) ----
  // Marks t as a leaf that requires grad and returns it.
  Tensor register_parameter(const std::string& name, Tensor t);
  // Non-trainable state. Non-persistent buffers (e.g. precomputed tables) stay out of
  // state_dict.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- traversal (recursive, registration order, dotted names) ----
  NamedTensors named_parameters() const;  // tied tensors once, under their first name
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;  // persistent and non-persistent
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  int64_t num_parameters() const;  // elements, tied tensors counted once

  // ---- serialisation ----
  // Parameters and persistent buffers under every name (tied tensors once per name).
  NamedTensors state_dict() const;
  // Copies each value into the tensor of that name (dtype converted, no autograd). strict:
  // every key of state_dict() must be given and no other. Throws naming the key on a
  // missing/unexpected key or a shape mismatch.
  void load_state_dict(const NamedTensors& state, bool strict = true);
  // Called on the module load_state_dict was called on, after the copy: a module that keeps
  // host data derived from its buffers rebuilds it here (memory/explicit.h's bank).
  virtual void after_load_state_dict() {}

  // ---- mode and gradients ----
  virtual void train(bool training = true);  // this module and all below it
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // makes every parameter's .grad undefined

  // In place: every floating parameter and buffer is converted (integer buffers keep their
  // dtype); gradients are dropped. Handles held elsewhere see the change.
  void to(DType dtype);
  void to(Device device);

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  enum class Kind { parameters, buffers, persistent_buffers };
  // Appends (prefixed name, tensor) of the kinds asked for, in PyTorch's order, duplicates
  // (tied tensors) included.
  void collect(const std::string& prefix, NamedTensors& out,
               std::initializer_list<Kind> kinds) const;

  NamedTensors params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An indexed list of children, named "0", "1", ... (HF's nn.ModuleList: "layers.3.mlp...").
class ModuleList : public Module {
 public:
  template <typename M>
  std::shared_ptr<M> append(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  int64_t size() const { return int64_t(named_children().size()); }
};

}  // namespace mnemo::nn
