// train (the dispatch), eval, sample, tokenize, tokenizer train (see commands.h).
//
// These are one-process commands: they never start MPI, so under mpirun each rank runs alone,
// and a rank that fails exits with its error at once (nothing waits for it in a collective or
// in MPI_Finalize), after which mpirun ends the job.
#include "train/lib/commands.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/lib/bank_command.h"
#include "train/lib/checkpoint.h"
#include "train/lib/device_select.h"
#include "train/lib/evaluate.h"
#include "train/lib/generate.h"
#include "train/lib/lm_step.h"
#include "train/lib/memgen_checkpoint.h"
#include "train/lib/run_config.h"
#include "train/lib/segment_checkpoint.h"
#include "train/lib/segment_generate.h"
#include "train/lib/segment_step.h"
#include "train/text/corpus.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

using nlohmann::json;

namespace {

LoadedCheckpoint load_on(const std::string& checkpoint, const std::string& device_spec) {
  LoadedCheckpoint ckpt = load_checkpoint(checkpoint);
  const Device device = select_device(device_spec, std::cerr);
  if (!device.is_cpu()) ckpt.model->to(device);
  return ckpt;
}

// `mnemo eval` on a memory-augmented checkpoint: the text as one stream.
void run_eval_segment_lm(const EvalOptions& o, const std::string& text, std::ostream& out) {
  LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(o.checkpoint);
  const Device device = select_device(o.device, std::cerr);
  if (!device.is_cpu()) ckpt.lm->to(device);
  const int64_t seq = o.seq > 0 ? o.seq : ckpt.run_config.train.seq_len;
  MNEMO_CHECK(seq >= 1 && seq <= ckpt.lm->segment_length(),
              "eval: --seq must be in [1, {}] (the model's segment_length), got {}",
              ckpt.lm->segment_length(), seq);
  const std::vector<int32_t> ids = ckpt.tokenizer->encode(text);
  MNEMO_CHECK(ids.size() >= 2, "eval: {} holds fewer than 2 tokens; nothing to score", o.text);
  const int64_t segments = (int64_t(ids.size()) - 1 + seq - 1) / seq;
  const EvalResult r =
      evaluate_streams(*ckpt.lm, ids, seq, segments, 1, token_byte_lengths(*ckpt.tokenizer));
  out << json{{"loss_nats_per_token", r.loss()},
              {"bits_per_byte", r.bits_per_byte()},
              {"tokens", r.tokens},
              {"bytes", r.bytes},
              {"mechanism", ckpt.lm->mechanism()},
              {"segments", segments},
              {"seq", seq}}
             .dump()
      << "\n";
}

// The model's view of a prompt: an eos id (the start of a document, as in training), then
// the prompt's ids.
std::vector<int32_t> sample_prompt(const text::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> prompt{tokenizer.eos_id()};
  const std::vector<int32_t> encoded = tokenizer.encode(text);
  prompt.insert(prompt.end(), encoded.begin(), encoded.end());
  return prompt;
}

// The prompt and its continuation, without the eos that ended it.
void print_sample(const std::string& prompt, const text::Tokenizer& tokenizer, Generated& result,
                  int64_t eos_id, std::ostream& out) {
  if (!result.tokens.empty() && result.tokens.back() == eos_id) result.tokens.pop_back();
  out << prompt << tokenizer.decode(result.tokens) << "\n";
}

// `mnemo sample` on a memory-augmented checkpoint: segments of its train.seq_len tokens with
// the memory state carried (segment_generate.h); there is no KV cache, so --no-cache changes
// nothing.
void run_sample_segment_lm(const SampleOptions& o, GenerateOptions g, std::ostream& out) {
  LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(o.checkpoint);
  const Device device = select_device(o.device, std::cerr);
  if (!device.is_cpu()) ckpt.lm->to(device);
  const std::vector<int32_t> prompt = sample_prompt(*ckpt.tokenizer, o.prompt);
  g.eos_id = ckpt.tokenizer->eos_id();
  g.vocab_limit = ckpt.tokenizer->vocab_size();
  // The explicit memory's options (bank_command.h): the bank updated in memory only, and a
  // log of each position's retrieval filled after every forward.
  if (!o.bank_update.empty()) {
    update_bank_from_prompt(explicit_lm(*ckpt.lm, "sample --bank-update"), *ckpt.tokenizer,
                            o.prompt, memory::parse_bank_policy(o.bank_update), std::cerr);
  }
  std::optional<RetrievalLog> retrieval;
  SegmentObserver observe;
  if (o.show_retrieval) {
    retrieval.emplace(explicit_lm(*ckpt.lm, "sample --show-retrieval"));
    observe = [&](int64_t fresh) { retrieval->record(fresh); };
  }
  Generated result = generate_segments(*ckpt.lm, prompt, g, ckpt.run_config.train.seq_len, observe);
  std::vector<int32_t> read = prompt;  // the ids the model read: all but the last generated
  read.insert(read.end(), result.tokens.begin(), result.tokens.end());
  print_sample(o.prompt, *ckpt.tokenizer, result, g.eos_id, out);
  if (retrieval) retrieval->print(read, *ckpt.tokenizer, out);
}

}  // namespace

std::unique_ptr<TrainStep> make_text_step(const RunConfig& rc) {
  MNEMO_CHECK(!rc.rl.enabled,
              "train: this config has an rl section; reinforcement learning runs with `mnemo rl`");
  if (rc.memory.enabled) return std::make_unique<SegmentStep>(rc);
  return std::make_unique<LmStep>(rc);
}

TrainSummary run_train(const TrainOptions& options, std::ostream& log) {
  return run_training(options, make_text_step, log);
}

void run_eval(const EvalOptions& o, std::ostream& out) {
  const std::string text = io::read_file(o.text);
  if (is_segment_checkpoint(o.checkpoint)) return run_eval_segment_lm(o, text, out);
  LoadedCheckpoint ckpt = load_on(o.checkpoint, o.device);
  const int64_t seq = o.seq > 0 ? o.seq : ckpt.config.max_position_embeddings;
  MNEMO_CHECK(seq >= 2 && seq <= ckpt.config.max_position_embeddings,
              "eval: --seq must be in [2, {}] (the model's max_position_embeddings), got {}",
              ckpt.config.max_position_embeddings, seq);  // (eval could take one more id)
  const std::vector<int32_t> ids = ckpt.tokenizer->encode(text);
  MNEMO_CHECK(ids.size() >= 2, "eval: {} holds fewer than 2 tokens; nothing to score", o.text);
  const EvalResult r =
      evaluate_windows(*ckpt.model, ids, seq, o.batch, token_byte_lengths(*ckpt.tokenizer));
  out << json{{"loss_nats_per_token", r.loss()},
              {"bits_per_byte", r.bits_per_byte()},
              {"tokens", r.tokens},
              {"bytes", r.bytes},
              {"windows", (int64_t(ids.size()) + seq - 1) / seq},
              {"seq", seq}}
             .dump()
      << "\n";
}

void run_sample(const SampleOptions& o, std::ostream& out) {
  MNEMO_CHECK(o.max_tokens >= 0, "sample: --max-tokens must be >= 0, got {}", o.max_tokens);
  GenerateOptions g;
  g.max_new_tokens = o.max_tokens;
  g.sampling.temperature = o.temperature;
  g.sampling.top_k = o.top_k;
  g.sampling.top_p = o.top_p;
  g.seed = o.seed;
  g.use_cache = o.use_cache;
  if (!o.bank_update.empty()) memory::parse_bank_policy(o.bank_update);  // before any loading
  if (is_memgen_checkpoint(o.checkpoint)) return run_sample_memgen(o, out);
  if (is_segment_checkpoint(o.checkpoint)) return run_sample_segment_lm(o, g, out);
  MNEMO_CHECK(!o.show_retrieval && o.bank_update.empty(),
              "sample: --show-retrieval and --bank-update need an explicit memory checkpoint; {} "
              "is a plain Llama one",
              o.checkpoint);
  LoadedCheckpoint ckpt = load_on(o.checkpoint, o.device);
  const std::vector<int32_t> prompt = sample_prompt(*ckpt.tokenizer, o.prompt);
  g.eos_id = ckpt.tokenizer->eos_id();
  g.vocab_limit = ckpt.tokenizer->vocab_size();
  Generated result = generate(*ckpt.model, prompt, g);
  print_sample(o.prompt, *ckpt.tokenizer, result, g.eos_id, out);
  if (result.hit_context_limit) {
    std::cerr << "sample: stopped at the model's context length ("
              << ckpt.config.max_position_embeddings << " tokens)\n";
  }
}

void run_tokenize(const std::string& checkpoint, const std::string& text_file,
                  const std::string& out_file) {
  const std::string text = io::read_file(text_file);
  const std::string dir = io::resolve_checkpoint(checkpoint);
  auto tokenizer = text::Tokenizer::load(dir + "/tokenizer.json");
  const std::vector<int32_t> ids = tokenizer->encode(text);
  io::write_file_atomic(out_file, json(ids).dump() + "\n");
}

void run_tokenizer_train(const std::string& text_path, int64_t vocab_size, const std::string& type,
                         const std::string& out_file, std::ostream& out) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> docs = text::read_documents(text_path);
  std::unique_ptr<text::Tokenizer> tokenizer;
  if (type == "byte") {
    tokenizer = std::make_unique<text::ByteTokenizer>();
  } else {
    MNEMO_CHECK(type == "bpe", "tokenizer train: --type must be bpe or byte, got '{}'", type);
    MNEMO_CHECK(vocab_size >= 257 && vocab_size <= (int64_t(1) << 24),
                "tokenizer train: --vocab-size must be in [257, 2^24] (256 bytes + eos + merges), "
                "got {}",
                vocab_size);
    tokenizer =
        std::make_unique<text::BpeTokenizer>(text::BpeTokenizer::train(docs, int32_t(vocab_size)));
  }
  tokenizer->save(out_file);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out << json{{"out", out_file},
              {"type", type},
              {"vocab_size", tokenizer->vocab_size()},
              {"documents", docs.size()},
              {"seconds", seconds}}
             .dump()
      << "\n";
}

}  // namespace mnemo::train
