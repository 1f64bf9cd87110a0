// `mnemo memory-bench facts` (facts_bench.h): train a mechanism and the baseline on the
// synthetic facts, ask both, then edit and extend an ExplicitLM's bank and ask again.
#include "train/lib/facts_bench.h"

#include <algorithm>
#include <chrono>
#include <ostream>
#include <set>
#include <span>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/explicit.h"
#include "memory/facts_task.h"
#include "train/lib/device_select.h"

namespace mnemo::train {

namespace {

using Clock = std::chrono::steady_clock;
using memory::Fact;
using memory::FactSplit;
using memory::FactsTask;

// What a model answered to a list of facts, question by question.
struct Answers {
  std::vector<int64_t> predicted;  // the token predicted at "?" (the argmax)
  std::vector<int64_t> read;       // the entry the first memory layer read (ExplicitLM only)
};

// Asks `facts`, `rows` rows of questions at a time, in eval mode under no_grad.
Answers ask(memory::SegmentLM& lm, const FactsTask& task, std::span<const Fact> facts, int64_t rows,
            Device device) {
  NoGradGuard no_grad;
  const bool was_training = lm.is_training();
  lm.eval();
  const auto* explicit_lm = dynamic_cast<const memory::ExplicitLM*>(&lm);
  const auto chunk = size_t(rows * task.questions_per_row());
  Answers answers;
  for (size_t first = 0; first < facts.size(); first += chunk) {
    const memory::FactQuestions q =
        task.ask(facts.subspan(first, std::min(chunk, facts.size() - first)));
    const memory::SegmentOutput out =
        lm.forward_segment(q.ids_tensor(device), lm.initial_state(q.rows));
    const int64_t V = out.logits.size(2);
    const std::vector<int64_t> best =
        to(argmax(reshape(out.logits, {-1, V}), 1), Device::cpu()).to_vector<int64_t>();  // (B*T)
    std::vector<int64_t> read;                                                            // (B*T)
    if (explicit_lm != nullptr) {
      read = explicit_lm->last_retrieval().at(0).selected.to_vector<int64_t>();
    }
    for (int64_t at : q.answer_at) {
      answers.predicted.push_back(best[size_t(at)]);
      if (explicit_lm != nullptr) answers.read.push_back(read[size_t(at)]);
    }
  }
  lm.train(was_training);
  return answers;
}

// Whether each answer is the fact's object.
std::vector<bool> right(const FactsTask& task, std::span<const Fact> facts, const Answers& a) {
  std::vector<bool> out;
  for (size_t k = 0; k < facts.size(); ++k) {
    out.push_back(a.predicted[k] == task.object_token(facts[k].object));
  }
  return out;
}

// count / total, or null when there is nothing to count.
nlohmann::json fraction(int64_t count, int64_t total) {
  return total == 0 ? nlohmann::json() : nlohmann::json(double(count) / double(total));
}

nlohmann::json exact_match(const std::vector<bool>& right) {
  return fraction(std::count(right.begin(), right.end(), true), int64_t(right.size()));
}

// How often the router read each fact's own entry.
nlohmann::json hit_rate(std::span<const Fact> facts, const Answers& a) {
  int64_t hits = 0;
  for (size_t k = 0; k < facts.size(); ++k) hits += a.read[k] == facts[k].slot ? 1 : 0;
  return fraction(hits, int64_t(facts.size()));
}

struct Scored {
  nlohmann::json details;  // {held_out, trained, ...}
  double final_loss = 0;
  int64_t parameters = 0;
};

// Edits, then inserts, into the bank of a trained ExplicitLM and asks again (facts_bench.h).
// `asked` are the held-out and trained facts, `before` whether each was answered right.
void edit_and_insert(memory::ExplicitLM& lm, const FactsTask& task, const std::vector<Fact>& asked,
                     const std::vector<bool>& before, int64_t rows, Device device,
                     nlohmann::json& details, std::ostream& log) {
  const std::vector<Fact> edits = task.edits();
  std::set<int64_t> edited;
  for (const Fact& e : edits) {
    lm.bank().set(e.slot, task.entry(e));
    edited.insert(e.slot);
  }
  lm.bank_changed();
  details["edit_success"] =
      edits.empty() ? nlohmann::json()
                    : exact_match(right(task, edits, ask(lm, task, edits, rows, device)));
  std::vector<Fact> kept;  // untouched facts that were answered right
  for (size_t k = 0; k < asked.size(); ++k) {
    if (before[k] && edited.count(asked[k].slot) == 0) kept.push_back(asked[k]);
  }
  details["edit_kept"] = kept.empty()
                             ? nlohmann::json()
                             : exact_match(right(task, kept, ask(lm, task, kept, rows, device)));

  std::vector<Fact> inserted = task.insertions();
  std::vector<std::vector<int32_t>> entries;
  for (const Fact& f : inserted) entries.push_back(task.entry(f));
  const std::vector<int64_t> slots = lm.bank().add(entries, memory::BankPolicy::fifo);
  lm.bank_changed();
  for (size_t k = 0; k < inserted.size(); ++k) inserted[k].slot = slots[k];
  const Answers answers = ask(lm, task, inserted, rows, device);
  details["inserted"] = exact_match(right(task, inserted, answers));
  details["inserted_hit_rate"] = hit_rate(inserted, answers);
  log << "memory-bench: explicit after " << edits.size() << " edits and " << inserted.size()
      << " insertions: " << details.dump() << "\n";
}

// Trains `lm` on the task's rows, then asks it every held-out and trained fact (and, for an
// ExplicitLM, edits and extends its bank).
Scored train_and_ask(memory::SegmentLM& lm, const FactsTask& task, const MemoryBenchOptions& o,
                     Device device, std::ostream& log) {
  auto* explicit_lm = dynamic_cast<memory::ExplicitLM*>(&lm);
  if (explicit_lm != nullptr) explicit_lm->set_bank(task.bank());
  Scored out;
  out.parameters = lm.num_parameters();
  out.final_loss = train_memory_bench_model(
      lm, o, o.steps, device,
      [&](int64_t step) {
        const memory::FactQuestions q = task.train_batch(step, o.batch);
        if (explicit_lm != nullptr) {
          explicit_lm->set_router_targets({q.router_targets_tensor(device)});
        }
        return lm.forward_backward({q.ids_tensor(device)}, {q.targets_tensor(device)},
                                   lm.initial_state(q.rows));
      },
      log);

  const std::vector<Fact>& held_out = task.facts(FactSplit::held_out);
  const std::vector<Fact>& trained = task.facts(FactSplit::trained);
  std::vector<Fact> asked = held_out;  // held-out, then trained
  asked.insert(asked.end(), trained.begin(), trained.end());
  const Answers answers = ask(lm, task, asked, o.batch, device);
  const std::vector<bool> ok = right(task, asked, answers);
  const auto split = ok.begin() + std::ptrdiff_t(held_out.size());
  out.details["held_out"] = exact_match(std::vector<bool>(ok.begin(), split));
  out.details["trained"] = exact_match(std::vector<bool>(split, ok.end()));
  log << "memory-bench: " << lm.mechanism() << " " << out.details.dump() << "\n";
  if (explicit_lm != nullptr) {
    out.details["hit_rate"] = hit_rate(asked, answers);
    edit_and_insert(*explicit_lm, task, asked, ok, o.batch, device, out.details, log);
  }
  return out;
}

}  // namespace

nlohmann::json run_facts_bench(const MemoryBenchOptions& o, std::ostream& log) {
  const auto start = Clock::now();
  // Everything the input names is checked before any training.
  const FactsTask task(o.seed, o.task_options);
  const MemoryBenchOptions opts = memory_bench_resolved(o);  // the task's defaults filled in
  const int64_t T = task.segment_length();
  const nn::LlamaConfig model = memory_bench_model(opts, task.vocab_size(), T);
  // The bank's shape is the task's, and it has no frozen part (every free slot takes an
  // insertion); --memory may still say otherwise, and the model then names the mismatch.
  nlohmann::json section = memory_bench_section(o.mechanism, T, 1, opts.steps, o.memory_overrides);
  if (o.mechanism == "explicit") {
    for (const auto& [key, value] :
         {std::pair<const char*, nlohmann::json>{"bank_entries", task.bank_entries()},
          {"entry_length", FactsTask::kEntryLength},
          {"freeze_ratio", 0.0}}) {
      if (!section.contains(key)) section[key] = value;
    }
  }
  const Device device = select_device(o.device, log);
  MemoryBenchModels models = make_memory_bench_models(o, model, section, T);

  log << "memory-bench: task facts " << task.config().dump() << ", " << opts.steps << " steps of "
      << o.batch << " rows x " << T << " tokens\n";
  const Scored base = train_and_ask(*models.baseline, task, opts, device, log);
  const Scored mem = models.memory ? train_and_ask(*models.memory, task, opts, device, log) : base;

  nlohmann::json r;
  r["task"] = "facts";
  r["mechanism"] = o.mechanism;
  r["metric"] = "exact_match";
  r["memory"] = mem.details["held_out"];
  r["baseline"] = base.details["held_out"];
  r["steps"] = opts.steps;
  r["lr"] = opts.lr;
  r["lr_decay"] = opts.lr_decay;
  r["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  r["higher_is_better"] = true;
  r["seed"] = o.seed;
  r["batch"] = o.batch;
  r["device"] = device.str();
  r["model"] = memory_bench_model_json(opts, model, T);
  if (models.memory) r["memory_config"] = section;
  r["parameters"] = {{"memory", mem.parameters}, {"baseline", base.parameters}};
  r["task_config"] = task.config();
  r["chance"] = 1.0 / double(task.objects());
  r["details"] = {{"memory", mem.details}, {"baseline", base.details}};
  r["final_loss"] = {{"memory", mem.final_loss}, {"baseline", base.final_loss}};
  return r;
}

}  // namespace mnemo::train
