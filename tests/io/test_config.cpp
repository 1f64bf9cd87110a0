// Config layer: merging a user file over typed defaults, --set overrides, and every error.
#include "train/io/config.h"

#include <doctest/doctest.h>

#include "core/error.h"
#include "io/temp_dir.h"
#include "support/errors.h"

namespace mnemo::io {
namespace {

using nlohmann::json;

json defaults() {
  return json::parse(R"({
    "model": {"hidden_size": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
              "architectures": ["LlamaForCausalLM"], "lr": 0.5},
    "train": {"steps": 100, "lr": 3e-4, "device": "auto", "seed": 0, "resume_from": null},
    "data": {"path": "", "val_fraction": 0.05}
  })");
}

}  // namespace

TEST_CASE("config: merge keeps defaults and takes user values") {
  json merged = merge_config(defaults(), json::parse(R"({"train": {"steps": 7, "lr": 1,
      "resume_from": "x"}, "data": {"path": "corpus.txt"}})"),
                             "run.json");
  CHECK(merged["train"]["steps"].get<int64_t>() == 7);
  CHECK(merged["train"]["lr"].is_number_float());
  CHECK(merged["train"]["lr"].get<double>() == 1.0);
  CHECK(merged["train"]["resume_from"] == "x");
  CHECK(merged["train"]["device"] == "auto");
  CHECK(merged["data"]["path"] == "corpus.txt");
  CHECK(merged["data"]["val_fraction"].get<double>() == 0.05);
  CHECK(merged["model"] == defaults()["model"]);

  json integral = merge_config(defaults(), json::parse(R"({"train": {"steps": 1e4}})"), "f");
  CHECK(integral["train"]["steps"].is_number_integer());
  CHECK(integral["train"]["steps"].get<int64_t>() == 10000);
}

TEST_CASE("config: merge errors name the source and the dotted key") {
  struct Case {
    const char* user;
    const char* fragment;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"train": {"lrr": 1}})", "run.json: unknown key 'train.lrr'"},
           {R"({"optim": {}})", "run.json: unknown key 'optim'"},
           {R"({"train": {"steps": 3.5}})", "'train.steps' expects an integer"},
           {R"({"train": {"steps": "10"}})", "'train.steps' expects an integer"},
           {R"({"train": {"lr": "fast"}})", "'train.lr' expects a number"},
           {R"({"model": {"tie_word_embeddings": 1}})",
            "'model.tie_word_embeddings' expects a bool"},
           {R"({"train": {"device": 0}})", "'train.device' expects a string"},
           {R"({"train": {"device": null}})", "'train.device' expects a string"},
           {R"({"model": {"architectures": "Llama"}})", "'model.architectures' expects an array"},
           {R"({"model": {"architectures": [1]}})", "'model.architectures[0]' expects a string"},
           {R"({"train": 5})", "'train' expects an object"},
           {R"([1])", "must be an object"},
       }) {
    CAPTURE(c.user);
    std::string message =
        test::error_message([&] { merge_config(defaults(), json::parse(c.user), "run.json"); });
    INFO("message: ", message);
    CHECK(message.find(c.fragment) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("config: --set overrides by dotted or unique bare key") {
  json config = defaults();
  apply_override(config, "train.steps=42");
  CHECK(config["train"]["steps"].get<int64_t>() == 42);
  apply_override(config, "steps=43");  // bare, unique
  CHECK(config["train"]["steps"].get<int64_t>() == 43);
  apply_override(config, "val_fraction=0");
  CHECK(config["data"]["val_fraction"].get<double>() == 0.0);
  CHECK(config["data"]["val_fraction"].is_number_float());
  apply_override(config, "device=cuda");  // not JSON: taken as a string
  CHECK(config["train"]["device"] == "cuda");
  apply_override(config, "data.path=123");  // a string key takes the raw text
  CHECK(config["data"]["path"] == "123");
  apply_override(config, "data.path=\"quoted\"");
  CHECK(config["data"]["path"] == "\"quoted\"");
  apply_override(config, "tie_word_embeddings=false");
  CHECK(config["model"]["tie_word_embeddings"] == false);
  apply_override(config, "model.architectures=[\"A\",\"B\"]");
  CHECK(config["model"]["architectures"] == json::array({"A", "B"}));
  apply_override(config, "train.lr=1e-3");
  CHECK(config["train"]["lr"].get<double>() == 1e-3);
  apply_override(config, "resume_from=7");  // null default: anything
  CHECK(config["train"]["resume_from"] == 7);
  apply_override(config, "train={\"seed\": 5}");  // a whole section merges key by key
  CHECK(config["train"]["seed"] == 5);
  CHECK(config["train"]["steps"] == 43);
  apply_override(config, "data.path=a=b");  // only the first '=' splits
  CHECK(config["data"]["path"] == "a=b");
}

TEST_CASE("config: --set errors name the key") {
  struct Case {
    const char* assignment;
    const char* fragment;
  };
  for (const Case& c : std::vector<Case>{
           {"lr=0.1", "ambiguous key 'lr'"},
           {"lrr=0.1", "unknown key 'lrr'"},
           {"train.lrr=0.1", "unknown key 'train.lrr'"},
           {"train.steps.x=1", "unknown key 'train.steps.x'"},
           {"steps=3.5", "'train.steps' expects an integer"},
           {"steps=ten", "'train.steps' expects an integer"},
           {"tie_word_embeddings=yes", "'model.tie_word_embeddings' expects a bool"},
           {"train.lr=", "'train.lr' expects a number"},
           {"train.steps", "expected key=value"},
           {"=3", "expected key=value"},
           {"train={\"lrr\": 1}", "unknown key 'train.lrr'"},
       }) {
    CAPTURE(c.assignment);
    json config = defaults();
    std::string message = test::error_message([&] { apply_override(config, c.assignment); });
    INFO("message: ", message);
    CHECK(message.find(c.fragment) != std::string::npos);
    CHECK(message.find("--set") != std::string::npos);
    CHECK(config == defaults());  // a failed override changes nothing
  }
}

TEST_CASE("config: JSON files, with positions in syntax errors and no duplicate keys") {
  testing::TempDir dir;
  std::string path = dir / "cfg.json";
  testing::write_bytes(path, "{\"train\": {\"steps\": 5}}");
  CHECK(load_json_file(path)["train"]["steps"] == 5);

  testing::write_bytes(path, "{\"train\": {\n  \"steps\": 5,\n}}");
  std::string message = test::error_message([&] { load_json_file(path); });
  CHECK(message.find(path) != std::string::npos);
  CHECK(message.find("line 3") != std::string::npos);

  testing::write_bytes(path, "{\"train\": {\"steps\": 5, \"steps\": 6}}");
  message = test::error_message([&] { load_json_file(path); });
  CHECK(message.find("duplicate key 'train.steps'") != std::string::npos);

  message = test::error_message([&] { load_json_file(dir / "nope.json"); });
  CHECK(message.find("nope.json") != std::string::npos);
}

}  // namespace mnemo::io
