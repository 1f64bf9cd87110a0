// TextStep: RUN/data, random windows, this rank's rows (see text_step.h).
#include "train/lib/text_step.h"

#include <algorithm>

#include "core/error.h"
#include "train/lib/evaluate.h"
#include "train/lib/run_support.h"

namespace mnemo::train {

Validation text_validation(const EvalResult& scored) {
  Validation v;
  v.metrics = {{"val_loss", scored.loss()}, {"val_bpb", scored.bits_per_byte()}};
  v.curve = scored.loss();
  return v;
}

void TextStep::prepare_data(const RunContext& run, std::ostream& log) {
  train::prepare_data(run.config, run.data_dir, log);
}

void TextStep::open_data(const RunContext& run) {
  tokenizer_ = text::Tokenizer::load((run.data_dir / "tokenizer.json").string());
  token_bytes_ = token_byte_lengths(*tokenizer_);
  train_shard_ = std::make_unique<text::TokenShard>((run.data_dir / "train.bin").string());
  MNEMO_CHECK(train_shard_->size() > window(),
              "train: the train shard ({}) holds {} tokens, fewer than one training row of {} + 1",
              (run.data_dir / "train.bin").string(), train_shard_->size(), window());
  sampler_ = std::make_unique<text::WindowSampler>(*train_shard_, window(), run.config.train.seed);
  const text::TokenShard val((run.data_dir / "val.bin").string());
  std::vector<int64_t> wide(size_t(val.size()));
  val.copy_range(0, val.size(), wide.data());
  val_ids_.assign(wide.begin(), wide.end());
}

void TextStep::save_data_state(nlohmann::json& trainer_state) const {
  trainer_state["sampler_position"] = sampler_->position();
}

void TextStep::load_data_state(const nlohmann::json& trainer_state) {
  MNEMO_CHECK(trainer_state.contains("sampler_position"), "trainer state: no sampler_position");
  sampler_->set_position(trainer_state["sampler_position"].get<uint64_t>());
}

TextRows TextStep::draw_rows(const RunContext& run) {
  const TrainSettings& t = run.config.train;
  const int64_t micro = t.batch_size / t.grad_accum;       // rows per micro-batch, all ranks
  const int64_t share = micro / run.comm.world_size();     // this rank's rows of it
  const int64_t first = int64_t(run.comm.rank()) * share;  // its first row
  const int64_t length = window();
  std::vector<int64_t> inputs(size_t(micro * length)), targets(inputs.size());
  sampler_->next(micro, inputs.data(), targets.data());
  const auto scored = [](auto begin, auto end) {
    return int64_t(std::count_if(begin, end, [](int64_t id) { return id != -100; }));
  };
  const int64_t global = scored(targets.begin(), targets.end());
  TextRows rows;
  rows.rows = share;
  rows.length = length;
  rows.inputs.assign(inputs.begin() + first * length, inputs.begin() + (first + share) * length);
  rows.targets.assign(targets.begin() + first * length, targets.begin() + (first + share) * length);
  rows.scored = scored(rows.targets.begin(), rows.targets.end());
  rows.loss_scale = 1.0 / (double(std::max<int64_t>(global, 1)) * double(t.grad_accum));
  return rows;
}

}  // namespace mnemo::train
