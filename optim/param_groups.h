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
#pragma once

#include "optim/optimizer.h"

namespace mnemo::optim {

std::vector<ParamGroup> decay_groups(const NamedTensors& named_params, double weight_decay);

}  // namespace mnemo::optim
