// mnemo — the command-line tool. Subcommands:
//
//   mnemo version                 the version and the features this build has
//   mnemo train                   train a Llama-style LM on text (train/lib/trainer.h), or a
//                                 memory-augmented one (a "memory" section in the config,
//                                 train/lib/segment_step.h)
//   mnemo eval                    score a text file with a checkpoint (train/lib/evaluate.h)
//   mnemo sample                  generate text from a checkpoint (train/lib/generate.h)
//   mnemo bank show|add|edit      read and edit an explicit memory checkpoint's bank
//                                 (train/lib/bank_command.h)
//   mnemo tokenize                a text file's token ids, as JSON
//   mnemo tokenizer train         train a byte-level BPE tokenizer
//   mnemo bench train             the training step's speed, as JSON (train/lib/bench_train.h)
//   mnemo demo-mlp [options]      train a small MLP on a generated spiral (train/lib/demo_mlp.h)
//   mnemo rl                      GRPO or PPO on a verifiable task (train/lib/rl_step.h)
//   mnemo rl-bench arith          warm start, RL and a supervised control, as JSON
//                                 (train/lib/rl_bench.h)
//   mnemo memory-bench TASK       a memory mechanism vs the no-memory baseline, as JSON
//                                 (train/lib/memory_bench.h); `facts`: an explicit memory
//                                 bank's facts (train/lib/facts_bench.h); `capacity`: the
//                                 capacity of one Titans memory (train/lib/memory_capacity.h)
//
// `--profile` on any subcommand (or MNEMO_PROFILE=1) records every backend op and, when the
// command ends, writes a Chrome trace and prints a per-op summary on stderr (core/profiler.h,
// docs/profiling.md). The trace goes into the run directory of `mnemo train --out DIR`
// (DIR/profile.json), elsewhere into the current directory (mnemo-profile.json), unless
// MNEMO_PROFILE_OUT names a file; the summary's last line says where.
//
// This file only parses arguments (CLI11) and maps failures to exit codes; the work lives
// in train/lib. Exit codes: 0 success; 2 bad input (a command-line error, or a mnemo::Error of
// kind input); 1 anything else — an internal error (a bug) or a system one (CUDA, MPI, the
// OS), core/error.h. Every error is one line on stderr.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/profiler.h"
#include "memory/factory.h"
#include "train/distributed/communicator.h"
#include "train/lib/bank_command.h"
#include "train/lib/bench_train.h"
#include "train/lib/build_info.h"
#include "train/lib/commands.h"
#include "train/lib/demo_mlp.h"
#include "train/lib/memgen_bench.h"
#include "train/lib/memory_bench.h"
#include "train/lib/memory_capacity.h"
#include "train/lib/rl_bench.h"
#include "train/lib/rl_step.h"
#include "train/lib/trainer.h"

namespace {

constexpr int kExitBadInput = 2;
constexpr int kExitInternal = 1;

// Prints "mnemo: <message>" as one line (any newline in message becomes "; ").
void print_error(const std::string& message) {
  std::string line = message;
  while (!line.empty() && line.back() == '\n') line.pop_back();
  for (size_t at = line.find('\n'); at != std::string::npos; at = line.find('\n', at)) {
    line.replace(at, 1, "; ");
  }
  std::cerr << "mnemo: " << line << "\n";
}

void add_demo_mlp_options(CLI::App& demo, mnemo::DemoMlpOptions& o, std::string& device) {
  demo.add_option("--steps", o.steps, "Gradient-descent steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  demo.add_option("--seed", o.seed, "Seed of the data and the initial weights")
      ->capture_default_str();
  demo.add_option("--threads", o.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 4096));
  demo.add_option("--lr", o.learning_rate, "Learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  demo.add_option("--classes", o.classes, "Spiral arms (classes)")
      ->check(CLI::Range(int64_t(2), int64_t(1000)))
      ->capture_default_str();
  demo.add_option("--points", o.points_per_class, "Points per arm")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 24))
      ->capture_default_str();
  demo.add_option("--hidden", o.hidden, "Width of the two hidden layers")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  demo.add_option("--print-every", o.print_every, "Print every N steps (default: ~20 lines)")
      ->check(CLI::NonNegativeNumber);
  demo.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
}

// What a run on the skeleton takes (`mnemo train`, `mnemo rl`): --config, --out, --steps,
// --stop-at, --set, --resume and --device.
void add_run_options(CLI::App& app, mnemo::train::TrainOptions& o, const std::string& config) {
  app.add_option("--config", o.config_file, config)->check(CLI::ExistingFile);
  app.add_option("--out", o.out_dir, "Run directory")->required();
  app.add_option("--steps", o.steps, "Override train.steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  app.add_option("--stop-at", o.stop_at,
                 "Stop after this step with a checkpoint; the schedule stays train.steps' "
                 "(continue with --resume)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  app.add_option("--set", o.overrides, "key=value (section.key or a unique key), repeatable")
      ->allow_extra_args(false);
  app.add_flag("--resume", o.resume, "Continue from OUT/latest");
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N");
}

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "CPU threads (default: the config's, else all cores)")
      ->check(CLI::Range(1, 4096));
}

}  // namespace

// GNU OpenMP's idle threads spin for ~300k iterations at the end of every parallel region
// before they sleep. On an idle machine that is free; on a busy one (other jobs, several ranks
// per core) the spinning threads steal the cores the working threads need, and mnemo's many
// short parallel regions collapse: `mnemo bench train` on configs/demo.json with 2 threads
// went from ~20k to 0.8-6k tokens/s beside two busy processes, and the memory-bench helpers
// saw 10-20x slower steps on a loaded machine. GOMP_SPINCOUNT=10000 (spin briefly, then
// sleep) measured 18-19k idle (default 17-21k, OMP_WAIT_POLICY=passive 16-18k) and 5.9k
// beside the two busy processes (passive 5.8-6.3k). libgomp reads its environment when it is
// loaded, before main, so the setting takes a re-exec of this same binary; a user's own
// OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone, and MNEMO_KEEP_OMP_ENV=1 skips this.
static void use_short_openmp_spin(char** argv) {
#if defined(__GNUC__) && !defined(__clang__) && defined(_OPENMP)
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") ||
      std::getenv("MNEMO_KEEP_OMP_ENV")) {
    return;
  }
  if (::setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
#else
  (void)argv;
#endif
}

int main(int argc, char** argv) {
  use_short_openmp_spin(argv);
  // A write past the file-size limit (ulimit -f) then fails with EFBIG, which the writers
  // report as an error naming the file, instead of killing the process by a signal.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"mnemo: a from-scratch deep-learning framework in C++20 and CUDA", "mnemo"};
  // At most one subcommand; "none" is reported after parsing, so that an unknown word is
  // named in the error ("not expected: frobnicate") rather than hidden behind "required".
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "mnemo " + mnemo::version());
  CLI::App* version = app.add_subcommand("version", "Print the version and the build's features");
  CLI::App* demo = app.add_subcommand(
      "demo-mlp", "Train a small MLP on a generated spiral with plain SGD, printing the loss");
  mnemo::DemoMlpOptions demo_options;
  std::string device = "cpu";
  add_demo_mlp_options(*demo, demo_options, device);
  int threads = 0;

  // ---- train ----
  mnemo::train::TrainOptions train_options;
  CLI::App* train = app.add_subcommand(
      "train", "Train a Llama-style language model on text (a config from configs/)");
  add_run_options(*train, train_options, "Run config (JSON: model, train, data)");
  train
      ->add_option("--zero", train_options.zero,
                   "1: shard the optimizer state across data-parallel ranks (ZeRO stage 1)")
      ->check(CLI::Range(0, 1));
  add_threads_option(*train, threads);

  // ---- rl ----
  mnemo::train::TrainOptions rl_options;
  std::string rl_init;
  CLI::App* rl = app.add_subcommand(
      "rl", "Reinforcement learning (GRPO or PPO) on a verifiable task (train/lib/rl_step.h)");
  add_run_options(*rl, rl_options, "Run config with an rl section (configs/arith-grpo.json)");
  rl->add_option("--init", rl_init, "Checkpoint of the initial (and reference) policy");
  add_threads_option(*rl, threads);

  // ---- rl-bench ----
  mnemo::train::RlBenchOptions rb_options;
  CLI::App* rl_bench = app.add_subcommand(
      "rl-bench",
      "A warm start, RL on it and a supervised control, as JSON (train/lib/rl_bench.h)");
  rl_bench->add_option("task", rb_options.task, "arith")->required();
  rl_bench->add_option("--algo", rb_options.algo, "grpo or ppo")->capture_default_str();
  rl_bench->add_option("--seed", rb_options.seed, "Seed of the prompts, weights and rollouts")
      ->capture_default_str();
  rl_bench->add_option("--out", rb_options.out, "Directory for the runs (default: a temp dir)");
  rl_bench->add_option("--set", rb_options.overrides, "key=value into the RL run's config")
      ->allow_extra_args(false);
  rl_bench->add_option("--warm-lr", rb_options.warm_lr, "The warm start's learning rate")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  rl_bench->add_option("--warm-batch", rb_options.warm_batch, "The warm start's examples per step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  add_threads_option(*rl_bench, threads);

  // ---- eval ----
  mnemo::train::EvalOptions eval_options;
  CLI::App* eval = app.add_subcommand(
      "eval", "Score a text file: loss per token and bits per byte, as one JSON line");
  eval->add_option("--checkpoint", eval_options.checkpoint, "Run or checkpoint directory")
      ->required();
  eval->add_option("--text", eval_options.text, "Text file")->required();
  eval->add_option("--seq", eval_options.seq, "Window length (default: max_position_embeddings)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 30));
  eval->add_option("--batch", eval_options.batch, "Windows per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  eval->add_option("--device", eval_options.device, "auto, cpu, cuda or cuda:N")
      ->capture_default_str();
  add_threads_option(*eval, threads);

  // ---- sample ----
  mnemo::train::SampleOptions sample_options;
  CLI::App* sample = app.add_subcommand("sample", "Generate text from a checkpoint");
  sample->add_option("--checkpoint", sample_options.checkpoint, "Run or checkpoint directory")
      ->required();
  sample->add_option("--prompt", sample_options.prompt, "Text to continue")->capture_default_str();
  sample->add_option("--max-tokens", sample_options.max_tokens, "Tokens to generate")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  sample->add_option("--temperature", sample_options.temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  sample->add_option("--top-k", sample_options.top_k, "Keep the k most likely tokens (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  sample->add_option("--top-p", sample_options.top_p, "Nucleus: smallest set with this mass")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  sample->add_option("--seed", sample_options.seed, "Sampling seed")->capture_default_str();
  bool no_cache = false;
  sample->add_flag("--no-cache", no_cache,
                   "Recompute the whole sequence at every token (plain LMs; a memory checkpoint "
                   "always recomputes its current segment)");
  sample->add_option("--device", sample_options.device, "auto, cpu, cuda or cuda:N")
      ->capture_default_str();
  sample->add_flag("--show-retrieval", sample_options.show_retrieval,
                   "Explicit memory: print the bank entry each position read, and alpha");
  sample
      ->add_option("--bank-update", sample_options.bank_update,
                   "Explicit memory: add the prompt's sentences to the bank first (fifo, lru or "
                   "similar; in memory only). A plain splitter on . ! ? and line breaks stands "
                   "in for the reference's LLMLingua fact extractor")
      ->check(CLI::IsMember({"fifo", "lru", "similar"}));
  add_threads_option(*sample, threads);

  // ---- bank ----
  mnemo::train::BankOptions bank_options;
  CLI::App* bank = app.add_subcommand(
      "bank", "Read and edit the memory bank of an explicit checkpoint (train/lib/bank_command.h)");
  bank->require_subcommand(1);
  CLI::App* bank_show = bank->add_subcommand("show", "Print one entry as JSON");
  CLI::App* bank_add = bank->add_subcommand("add", "Add each line of a text file as a new entry");
  CLI::App* bank_edit = bank->add_subcommand("edit", "Rewrite one entry");
  for (CLI::App* command : {bank_show, bank_add, bank_edit}) {
    command->add_option("--checkpoint", bank_options.checkpoint, "Run or checkpoint directory")
        ->required();
  }
  for (CLI::App* command : {bank_show, bank_edit}) {
    command->add_option("--entry", bank_options.entry, "Entry index")->required();
  }
  bank_add->add_option("--text", bank_options.text, "Text file, one entry per line")->required();
  bank_add->add_option("--policy", bank_options.policy, "Slots to replace: fifo, lru or similar")
      ->check(CLI::IsMember({"fifo", "lru", "similar"}))
      ->capture_default_str();
  bank_edit->add_option("--text", bank_options.text, "The entry's new text")->required();

  // ---- tokenize ----
  std::string tokenize_checkpoint, tokenize_text, tokenize_out;
  CLI::App* tokenize =
      app.add_subcommand("tokenize", "Write a text file's token ids as a JSON array");
  tokenize->add_option("--checkpoint", tokenize_checkpoint, "Run or checkpoint directory")
      ->required();
  tokenize->add_option("--text", tokenize_text, "Text file")->required();
  tokenize->add_option("--out", tokenize_out, "Output JSON file")->required();

  // ---- tokenizer train ----
  CLI::App* tokenizer = app.add_subcommand("tokenizer", "Tokenizer tools");
  tokenizer->require_subcommand(1);
  CLI::App* tokenizer_train =
      tokenizer->add_subcommand("train", "Train a byte-level BPE tokenizer on text");
  std::string tok_text, tok_out, tok_type = "bpe";
  int64_t tok_vocab = 512;
  tokenizer_train->add_option("--text", tok_text, "Text file or directory")->required();
  tokenizer_train->add_option("--vocab-size", tok_vocab, "Ids: 256 bytes + merges + eos")
      ->capture_default_str();
  tokenizer_train->add_option("--type", tok_type, "bpe or byte")->capture_default_str();
  tokenizer_train->add_option("--out", tok_out, "Output tokenizer.json")->required();

  // ---- bench train ----
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks printing JSON");
  bench->require_subcommand(1);
  CLI::App* bench_train =
      bench->add_subcommand("train", "Time the training step of a config (one JSON line)");
  mnemo::train::BenchTrainOptions bench_options;
  bench_train->add_option("--config", bench_options.config_file, "Run config")
      ->required()
      ->check(CLI::ExistingFile);
  bench_train->add_option("--batch", bench_options.batch, "Sequences per step (default: config)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  bench_train->add_option("--seq", bench_options.seq, "Tokens per sequence (default: config)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  bench_train->add_option("--steps", bench_options.steps, "Timed steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  bench_train->add_option("--warmup", bench_options.warmup, "Untimed steps first")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  bench_train->add_option("--set", bench_options.overrides, "key=value, repeatable");
  bench_train->add_option("--device", bench_options.device, "auto, cpu, cuda or cuda:N");
  add_threads_option(*bench_train, threads);

  // ---- memory-bench ----
  mnemo::train::MemoryBenchOptions mb_options;
  CLI::App* memory_bench = app.add_subcommand(
      "memory-bench",
      "Train a memory mechanism and the no-memory baseline on a task, one JSON line");
  memory_bench
      ->add_option("task", mb_options.task,
                   "recall, copy-far, longdoc, facts, memgen (train/lib/memgen_bench.h), or "
                   "capacity (titans: one memory, no training)")
      ->required();
  memory_bench->add_option("--mechanism", mb_options.mechanism,
                           mnemo::memory::mechanism_list() + " (required but for memgen)");
  memory_bench->add_option("--seed", mb_options.seed, "Seed of the streams and the weights")
      ->capture_default_str();
  memory_bench->add_option("--steps", mb_options.steps, "Training steps (default: the task's)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  memory_bench->add_option("--batch", mb_options.batch, "Streams per step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  memory_bench->add_option("--eval-streams", mb_options.eval_streams, "Held-out streams scored")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))
      ->capture_default_str();
  memory_bench
      ->add_option("--lr", mb_options.lr,
                   "AdamW learning rate (default 3e-3; 1e-3 for copy-far and for memformer)")
      ->check(CLI::PositiveNumber);
  memory_bench
      ->add_option("--lr-decay", mb_options.lr_decay,
                   "The last fraction of the steps over which the learning rate falls linearly "
                   "to 0 (default 0: constant)")
      ->check(CLI::Range(0.0, 1.0));
  memory_bench
      ->add_option("--scalar-lr-scale", mb_options.scalar_lr_scale,
                   "Learning-rate factor of gates, temperatures and other small scalars "
                   "(default 10; 1 for titans)")
      ->check(CLI::PositiveNumber);
  memory_bench
      ->add_option("--init-std", mb_options.init_std,
                   "Weight init std of both models (default: the task's: "
                   "1/sqrt(hidden) for recall, else 0.02)")
      ->check(CLI::NonNegativeNumber);
  memory_bench->add_option("--layers", mb_options.layers, "Decoder layers (both models)")
      ->check(CLI::Range(int64_t(1), int64_t(1024)))
      ->capture_default_str();
  memory_bench->add_option("--hidden", mb_options.hidden, "Width (both models)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 16))
      ->capture_default_str();
  memory_bench->add_option("--heads", mb_options.heads, "Attention heads (both models)")
      ->check(CLI::Range(int64_t(1), int64_t(1024)))
      ->capture_default_str();
  memory_bench
      ->add_option("--memory", mb_options.memory_overrides,
                   "key=value into the mechanism's memory section, repeatable")
      ->allow_extra_args(false);
  memory_bench->add_option("--device", mb_options.device, "auto, cpu, cuda or cuda:N")
      ->capture_default_str();
  mnemo::train::MemGenBenchOptions mg_options;
  memory_bench->add_option("--reasoner", mg_options.reasoner,
                           "memgen: a trained reasoner's checkpoint (skips pre-training)");
  memory_bench->add_option("--out", mg_options.out,
                           "memgen: write the reasoner and the trained weaver + trigger here");
  memory_bench
      ->add_option("--trigger-steps", mg_options.trigger_steps,
                   "memgen: GRPO steps of the trigger (and the weaver under its pattern)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  memory_bench
      ->add_option("--weaver-grpo-steps", mg_options.weaver_grpo_steps,
                   "memgen: GRPO steps of a copy of the trained weaver on the task's reward "
                   "(0: none)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  memory_bench
      ->add_option("--weaver-grpo-lr", mg_options.weaver_grpo_lr, "memgen: the weaver's GRPO lr")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  memory_bench
      ->add_option("--reasoner-lr", mg_options.pretrain_lr,
                   "memgen: the reasoner's pre-training lr")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  memory_bench
      ->add_option("--reasoner-batch", mg_options.pretrain_batch,
                   "memgen: chains per pre-training step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  memory_bench
      ->add_option("--reasoner-steps", mg_options.pretrain_max_steps,
                   "memgen: pre-training steps at most")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))
      ->capture_default_str();
  memory_bench
      ->add_option("--trigger-penalty", mg_options.trigger_penalty,
                   "memgen: lambda, the cost of an insertion beyond the good rows' rate")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::string mb_plot = "memory-capacity.svg";
  memory_bench->add_option("--plot", mb_plot, "capacity: the SVG chart to write")
      ->capture_default_str();
  add_threads_option(*memory_bench, threads);
  // Task options: kept as text and handed to the task, which rejects those it does not take.
  std::map<std::string, std::string> mb_task_values;
  const std::pair<const char*, const char*> mb_task_options[] = {
      {"gap", "copy-far: segments between the string and its copy (2)"},
      {"length", "copy-far: symbols in the string (8)"},
      {"symbols", "copy-far: alphabet size (16)"},
      {"pairs", "recall: key->value pairs per stream (8)"},
      {"local-items", "recall: in-segment items per segment (4)"},
      {"segments", "recall, longdoc: segments per stream (5, 8)"},
      {"segment-length",
       "all tasks: tokens per segment = the local window (recall 40, copy-far 32, longdoc 64, "
       "facts 40)"},
      {"corpus", "longdoc: directory of C/C++ headers (/usr/include)"},
      {"ngram", "longdoc: n-gram length defining far bytes (4)"},
      {"syllables", "facts: syllables n; n*n subjects = bank entries (64)"},
      {"relations", "facts: relations (8)"},
      {"objects", "facts: objects (64)"},
      {"held-out", "facts: fraction of facts in the bank but never in training text (0.25)"},
      {"reserved", "facts: fraction kept out of the bank, inserted after training (0.0625)"},
      {"layout", "facts: bank layout, grid or shuffled (grid)"},
      {"edits", "facts: facts edited in the bank after training (256)"},
      {"chain-steps", "memgen: steps of a chain (4)"},
      {"modulus", "memgen: the arithmetic's modulus, at most 10 (10)"},
      {"operators", "memgen: the operators, some of +*- (+*-)"},
      {"changed", "memgen: the operator rule B changes to x op y + 1 (*)"}};
  std::vector<std::pair<std::string, CLI::Option*>> mb_task_flags;
  for (const auto& [name, help] : mb_task_options) {
    mb_task_flags.emplace_back(
        name, memory_bench->add_option(std::string("--") + name, mb_task_values[name], help));
  }

  // --profile: accepted before the subcommand and on every (sub)subcommand.
  bool profile = false;
  for (CLI::App* command : {&app, version, demo, train, eval, sample, tokenize, tokenizer_train,
                            bench_train, memory_bench}) {
    command->add_flag("--profile", profile,
                      "Profile every op: a summary on stderr and a Chrome trace (train: "
                      "OUT/profile.json; others: ./mnemo-profile.json; MNEMO_PROFILE_OUT "
                      "overrides)");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    print_error(std::string(e.what()) + " (see mnemo --help)");
    return kExitBadInput;
  }
  if (app.get_subcommands().empty()) {
    print_error(
        "a subcommand is required: train, rl, rl-bench, eval, sample, bank, tokenize, tokenizer, "
        "bench, memory-bench, version or demo-mlp (see mnemo --help)");
    return kExitBadInput;
  }

  try {
    // A session MNEMO_PROFILE=1 started before main is restarted here, so that its trace
    // also goes into the command's run directory.
    if (profile || mnemo::profiler::enabled()) {
      const std::string run_dir = *train ? train_options.out_dir
                                  : *rl  ? rl_options.out_dir
                                         : std::string();
      mnemo::profiler::Options options = mnemo::profiler::options_from_env(run_dir);
      // Under mpirun every rank profiles itself: rank R > 0 writes NAME.rankR.json beside
      // rank 0's NAME.json instead of overwriting it.
      const int rank = mnemo::dist::launcher_rank();
      const std::string& path = options.trace_path;
      if (rank > 0 && path.size() > 5 && path.ends_with(".json")) {
        options.trace_path = fmt::format("{}.rank{}.json", path.substr(0, path.size() - 5), rank);
      }
      mnemo::profiler::start(options);
    }
    if (threads > 0) mnemo::set_num_threads(threads);
    if (*version) {
      std::cout << mnemo::version_report();
    } else if (*train) {
      if (threads > 0) train_options.overrides.push_back(fmt::format("train.threads={}", threads));
      if (train_options.config_file.empty() && !train_options.resume) {
        throw mnemo::Error("train: --config FILE is required (unless --resume)");
      }
      // The plain LM trainer, or the memory-augmented one for a config with a memory section.
      const auto summary = mnemo::train::run_train(train_options, std::cerr);
      (void)summary;
    } else if (*rl) {
      if (threads > 0) rl_options.overrides.push_back(fmt::format("train.threads={}", threads));
      mnemo::train::run_rl(rl_options, rl_init, std::cerr);
    } else if (*rl_bench) {
      rb_options.threads = threads;
      std::cout << mnemo::train::run_rl_bench(rb_options, std::cerr).dump() << std::endl;
    } else if (*eval) {
      mnemo::train::run_eval(eval_options, std::cout);
    } else if (*sample) {
      sample_options.use_cache = !no_cache;
      mnemo::train::run_sample(sample_options, std::cout);
    } else if (*bank_show) {
      mnemo::train::run_bank_show(bank_options, std::cout);
    } else if (*bank_add) {
      mnemo::train::run_bank_add(bank_options, std::cout);
    } else if (*bank_edit) {
      mnemo::train::run_bank_edit(bank_options, std::cout);
    } else if (*tokenize) {
      mnemo::train::run_tokenize(tokenize_checkpoint, tokenize_text, tokenize_out);
    } else if (*tokenizer_train) {
      mnemo::train::run_tokenizer_train(tok_text, tok_vocab, tok_type, tok_out, std::cout);
    } else if (*bench_train) {
      if (threads > 0) bench_options.overrides.push_back(fmt::format("train.threads={}", threads));
      const nlohmann::json result = mnemo::train::bench_train(bench_options);
      if (!result.is_null()) std::cout << result.dump() << std::endl;
    } else if (*memory_bench && mb_options.task == "capacity") {
      if (mb_options.mechanism != "titans") {
        throw mnemo::Error("memory-bench capacity: measures a Titans memory (--mechanism titans)");
      }
      mnemo::train::CapacityOptions capacity;
      capacity.apply(mb_options.memory_overrides);
      capacity.seed = mb_options.seed;
      capacity.plot = mb_plot;
      for (const auto& row : mnemo::train::run_memory_capacity(capacity, std::cerr)) {
        std::cout << row.dump() << std::endl;
      }
    } else if (*memory_bench && mb_options.task == "memgen") {
      if (!mb_options.mechanism.empty() && mb_options.mechanism != "memgen") {
        throw mnemo::Error(
            "memory-bench memgen: measures MemGen (--mechanism memgen or none given)");
      }
      for (const auto& [name, option] : mb_task_flags) {
        if (option->count() > 0) mg_options.task_options[name] = mb_task_values[name];
      }
      mg_options.seed = mb_options.seed;
      if (mb_options.steps > 0) mg_options.steps = mb_options.steps;
      if (memory_bench->count("--batch") > 0) mg_options.batch = mb_options.batch;
      if (memory_bench->count("--eval-streams") > 0)
        mg_options.eval_chains = mb_options.eval_streams;
      if (mb_options.lr > 0) mg_options.lr = mb_options.lr;
      mg_options.memory_overrides = mb_options.memory_overrides;
      if (mb_options.device != "cpu" && mb_options.device != "auto") {
        throw mnemo::Error("memory-bench memgen: runs on the CPU only (--device " +
                           mb_options.device + ")");
      }
      std::cout << mnemo::train::run_memgen_bench(mg_options, std::cerr).dump() << std::endl;
    } else if (*memory_bench) {
      if (mb_options.mechanism.empty()) {
        throw mnemo::Error("memory-bench " + mb_options.task + ": --mechanism is required");
      }
      for (const auto& [name, option] : mb_task_flags) {
        if (option->count() > 0) mb_options.task_options[name] = mb_task_values[name];
      }
      std::cout << mnemo::train::run_memory_bench(mb_options, std::cerr).dump() << std::endl;
    } else if (*demo) {
      demo_options.device = mnemo::Device::parse(device);
      mnemo::run_demo_mlp(demo_options, std::cout);
    }
    // The report of a --profile or MNEMO_PROFILE=1 session (after a failure, the profiler's
    // exit hook writes it).
    if (mnemo::profiler::enabled()) mnemo::profiler::stop();
    return 0;
  } catch (const mnemo::Error& e) {
    // Bad input is the user's to fix: its message stands alone. The other kinds say what
    // they are (core/error.h).
    if (e.kind() == mnemo::ErrorKind::input) {
      print_error(e.what());
    } else {
      print_error(fmt::format("{} error: {}", mnemo::error_kind_name(e.kind()), e.what()));
    }
    return mnemo::exit_status(e.kind());
  } catch (const std::exception& e) {
    print_error(std::string("internal error: ") + e.what());
    return kExitInternal;
  } catch (...) {
    print_error("internal error: an exception of unknown type");
    return kExitInternal;
  }
}
