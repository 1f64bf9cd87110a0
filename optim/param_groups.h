// The usual weight-decay split of a model's parameters into two optimizer groups.
//
// Weight decay shrinks weights towards zero. That suits the matrices of linear layers, but
// not gains and biases (decaying a norm's gain towards 0 fights the normalisation) nor
// embeddings (rows of rare tokens would be decayed at every step while rarely getting a
// gradient). So, as in GPT-2/nanoGPT/Llama training recipes:
//
//   group 0 ("decay"):    every parameter with 2 or more dims whose name has no "embed",
//                         weight_decay = the given value;
//   group 1 ("no decay"): every parameter with fewer than 2 dims (norm weights, biases) and
//                         every parameter whose name contains "embed", weight_decay = 0.
//
// A tensor listed under several names (tied weights: model.embed_tokens.weight is also
// lm_head.weight) goes in once, under its first name, and is not decayed if any of its names
// contains "embed". Both groups are always returned (possibly empty), in this order.
//
// Scalar controls: the memory mechanisms (memory/) have small 0-/1-D parameters — per-head
// gates, temperatures, distance slopes — that move too slowly at the matrices' learning rate
// (one gradient step changes a gate by about lr, while it may need to travel several units).
// split_scalar_controls moves them into a group of their own whose learning rate is scaled.
#pragma once

#include "optim/optimizer.h"

namespace mnemo::optim {

std::vector<ParamGroup> decay_groups(const NamedTensors& named_params, double weight_decay);

// A scalar control: at most 1-D, at most 64 elements, and not a norm's gain (its name has no
// "norm").
bool is_scalar_control(const std::string& name, const Tensor& param);

// Moves every scalar control out of `groups` (keeping the order of the rest) into one new
// group, appended last, with weight decay 0 and the given lr_scale. The new group is
// appended even when it is empty, so the group count does not depend on the model.
void split_scalar_controls(std::vector<ParamGroup>& groups, double lr_scale);

}  // namespace mnemo::optim
