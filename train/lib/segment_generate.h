// Autoregressive generation from a memory-augmented LM (a SegmentLM, memory/segment_lm.h).
//
// A SegmentLM reads a stream in segments of at most S tokens (S = segment_tokens, by default
// lm.segment_length()) and carries a MemoryState from one segment to the next. Generation
// keeps two things:
//
//   state    the memory of every completed segment (lm.initial_state(1) at the start)
//   current  the tokens of the current, incomplete segment (0 <= |current| < S)
//
// and repeats, for the prompt's tokens and then for each new token x:
//
//   current.push_back(x)
//   out    = lm.forward_segment(current (1, t), state)      logits (1, t, V), t = |current|
//   next   = sample(out.logits[0, t-1, :])                    the next token's logits (V,)
//   if t == S:  state = out.state;  current = {}              commit the completed segment
//
// The commit is exactly what evaluation does (evaluate.h, evaluate_streams): the state
// after a full segment is forward_segment(that segment, the state before it).state. A partial
// segment never changes `state`; its tokens are re-read at every step. (The prompt is fed in
// chunks of S, one forward per chunk, with the same commits.)
//
// Cost: no KV cache — every step recomputes the current segment, so the token at position t
// of a segment costs one forward over t tokens: O(S^2) token-forwards per segment (S/2 times
// the cost of scoring it), plus the mechanism's memory read for each recomputed query. The
// stream itself has no length limit; the memory is what bounds the context.
//
// Options and result are the plain generate's (generate.h): max_new_tokens, sampling
// (temperature 0 = greedy), seed, eos_id. use_cache is ignored (there is no cache), and
// hit_context_limit is never set. Runs in eval mode under no_grad on the lm's device.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "memory/segment_lm.h"
#include "train/lib/generate.h"

namespace mnemo::train {

// Called after every forward with the number of positions it read for the first time: the
// last `fresh` of the segment it read (the others were read by an earlier forward). What the
// model keeps about its last forward (ExplicitLM::last_retrieval) then describes them.
using SegmentObserver = std::function<void(int64_t fresh)>;

// prompt: at least one token id. segment_tokens: S, in [1, lm.segment_length()]; 0 = the
// model's segment_length (a checkpoint's train.seq_len is what it was trained and evaluated
// with). Throws mnemo::Error naming the option that is out of range.
Generated generate_segments(memory::SegmentLM& lm, std::span<const int32_t> prompt,
                            const GenerateOptions& options, int64_t segment_tokens = 0,
                            const SegmentObserver& observe = {});

}  // namespace mnemo::train
