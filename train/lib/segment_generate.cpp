// Generation from a SegmentLM (see segment_generate.h for the loop and its cost).
#include "train/lib/segment_generate.h"

#include <algorithm>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::train {

namespace {

// The stream as the model reads it: the committed memory and the current segment.
class SegmentStream {
 public:
  SegmentStream(memory::SegmentLM& lm, int64_t segment_tokens, Device device,
                const SegmentObserver& observe)
      : lm_(lm),
        S_(segment_tokens),
        device_(device),
        observe_(observe),
        state_(lm.initial_state(1)) {}

  // Appends `ids` (|current| + |ids| <= S) and returns the logits (V,) of the token after
  // them; commits the segment when it is full.
  Tensor append(std::span<const int32_t> ids) {
    current_.insert(current_.end(), ids.begin(), ids.end());
    const int64_t t = int64_t(current_.size());
    MNEMO_CHECK(t >= 1 && t <= S_, "generate_segments: segment of {} tokens (at most {})", t, S_);
    const Tensor input =
        to(from_vector(std::vector<int64_t>(current_.begin(), current_.end()), {1, t}), device_);
    memory::SegmentOutput out = lm_.forward_segment(input, state_);  // logits (1, t, V)
    if (observe_) observe_(int64_t(ids.size()));
    Tensor next = select(select(out.logits, 0, 0), 0, t - 1);  // (V,)
    if (t == S_) {
      state_ = std::move(out.state);
      current_.clear();
    }
    return next;
  }

  // Feeds `ids` in pieces that fill the current segment, one forward per piece.
  Tensor feed(std::span<const int32_t> ids) {
    Tensor next;
    while (!ids.empty()) {
      const size_t room = size_t(S_) - current_.size();
      const size_t n = std::min(room, ids.size());
      next = append(ids.first(n));
      ids = ids.subspan(n);
    }
    return next;
  }

 private:
  memory::SegmentLM& lm_;
  int64_t S_;
  Device device_;
  const SegmentObserver& observe_;
  memory::MemoryState state_;     // after the last committed segment
  std::vector<int32_t> current_;  // the incomplete segment, < S_ tokens
};

Device device_of(const memory::SegmentLM& lm) {
  const std::vector<Tensor> params = lm.parameters();
  return params.empty() ? Device::cpu() : params.front().device();
}

}  // namespace

Generated generate_segments(memory::SegmentLM& lm, std::span<const int32_t> prompt,
                            const GenerateOptions& options, int64_t segment_tokens,
                            const SegmentObserver& observe) {
  MNEMO_CHECK(!prompt.empty(), "generate_segments: the prompt must hold at least one token");
  MNEMO_CHECK(options.max_new_tokens >= 0, "generate_segments: max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  const int64_t S = segment_tokens > 0 ? segment_tokens : lm.segment_length();
  MNEMO_CHECK(segment_tokens >= 0 && S <= lm.segment_length(),
              "generate_segments: segment_tokens must be in [1, {}] (the {} model's "
              "segment_length) or 0, got {}",
              lm.segment_length(), lm.mechanism(), segment_tokens);
  nn::validate(options.sampling);
  const bool was_training = lm.is_training();
  lm.eval();
  NoGradGuard no_grad;
  Generator gen(options.seed);
  Generated out;
  SegmentStream stream(lm, S, device_of(lm), observe);
  Tensor logits = stream.feed(prompt);
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    const nn::Sampled next = next_token(logits, options, gen);
    const int32_t token = int32_t(next.token);
    out.tokens.push_back(token);
    out.logprobs.push_back(next.logprob);
    if (next.token == options.eos_id || step + 1 == options.max_new_tokens) break;
    logits = stream.feed(std::span(&token, 1));
  }
  lm.train(was_training);
  return out;
}

}  // namespace mnemo::train
