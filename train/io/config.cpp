// Typed config merging and --set overrides (see config.h for the rules).
#include "train/io/config.h"

#include <cmath>
#include <set>
#include <vector>

#include "core/error.h"
#include "train/io/files.h"

namespace mnemo::io {
namespace {

using nlohmann::json;

// "[json.exception.parse_error.101] parse error at line 1, ..." -> "parse error at line 1, ..."
std::string strip_exception_prefix(const std::string& what) {
  if (what.rfind("[json.exception.", 0) == 0) {
    size_t close = what.find("] ");
    if (close != std::string::npos) return what.substr(close + 2);
  }
  return what;
}

// Tracks the keys of every open object during parsing, to catch duplicates (the plain parser
// silently keeps the last one).
struct DuplicateKeyFinder {
  struct Frame {
    bool is_object = false;
    std::set<std::string> keys;
    std::string current;
  };
  std::vector<Frame> stack;
  std::string duplicate;  // dotted path of the first duplicate key, "" if none

  bool on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: stack.push_back({true, {}, {}}); break;
      case json::parse_event_t::array_start: stack.push_back({false, {}, {}}); break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case json::parse_event_t::key: {
        if (stack.empty() || !stack.back().is_object) break;
        Frame& frame = stack.back();
        frame.current = parsed.get<std::string>();
        if (!frame.keys.insert(frame.current).second && duplicate.empty()) duplicate = path();
        break;
      }
      case json::parse_event_t::value: break;
    }
    return true;
  }

  std::string path() const {
    std::string out;
    for (const Frame& frame : stack) {
      if (!frame.is_object) continue;
      if (!out.empty()) out += '.';
      out += frame.current;
    }
    return out;
  }
};

bool is_integer(const json& v) {
  return v.is_number_integer();
}  // signed or unsigned

std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

json merge_at(const json& defaults, const json& user, std::string_view source,
              const std::string& prefix);

// Returns value converted to the default's type, or throws naming source and key.
json checked_value(const json& default_value, const json& value, std::string_view source,
                   const std::string& key) {
  auto mismatch = [&](std::string_view expected) {
    fail("{}: key '{}' expects {}, got {} {}", source, key, expected, json_type_phrase(value),
         value.dump());
  };
  if (default_value.is_null()) return value;
  if (default_value.is_object()) {
    if (!value.is_object()) mismatch("an object (a section)");
    return merge_at(default_value, value, source, key);
  }
  if (is_integer(default_value)) {
    if (is_integer(value)) return value;
    if (value.is_number_float()) {
      double d = value.get<double>();
      // Integral floats (1e4) are accepted; the range check keeps the cast defined.
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return int64_t(d);
    }
    mismatch("an integer");
  }
  if (default_value.is_number_float()) {
    if (!value.is_number()) mismatch("a number");
    return value.get<double>();
  }
  if (default_value.is_boolean()) {
    if (!value.is_boolean()) mismatch("a bool (true or false)");
    return value;
  }
  if (default_value.is_string()) {
    if (!value.is_string()) mismatch("a string");
    return value;
  }
  if (default_value.is_array()) {
    if (!value.is_array()) mismatch("an array");
    if (default_value.empty()) return value;
    json out = json::array();
    for (size_t i = 0; i < value.size(); ++i) {
      out.push_back(
          checked_value(default_value[0], value[i], source, key + "[" + std::to_string(i) + "]"));
    }
    return out;
  }
  fail("{}: key '{}' has a default of unsupported type {}", source, key,
       json_type_phrase(default_value));
}

json merge_at(const json& defaults, const json& user, std::string_view source,
              const std::string& prefix) {
  MNEMO_CHECK(defaults.is_object(), "merge_config: defaults{} must be an object, got {}",
              prefix.empty() ? "" : " of '" + prefix + "'", json_type_phrase(defaults));
  if (!user.is_object()) {
    fail("{}: {} must be an object, got {}", source,
         prefix.empty() ? std::string("the config") : "'" + prefix + "'", json_type_phrase(user));
  }
  json merged = defaults;
  for (const auto& [key, value] : user.items()) {
    std::string full_key = join_key(prefix, key);
    auto it = defaults.find(key);
    if (it == defaults.end()) fail("{}: unknown key '{}'", source, full_key);
    if (it->is_object()) {
      if (!value.is_object()) {
        fail("{}: key '{}' expects an object (a section), got {} {}", source, full_key,
             json_type_phrase(value), value.dump());
      }
      merged[key] = merge_at(*it, value, source, full_key);
    } else {
      merged[key] = checked_value(*it, value, source, full_key);
    }
  }
  return merged;
}

// Every dotted path in config whose last component is key.
void find_key(const json& config, const std::string& key, const std::string& prefix,
              std::vector<std::string>& found) {
  for (const auto& [name, value] : config.items()) {
    std::string path = join_key(prefix, name);
    if (name == key) found.push_back(path);
    if (value.is_object()) find_key(value, key, path, found);
  }
}

std::vector<std::string> split_dots(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.emplace_back(key.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

}  // namespace

std::string json_type_phrase(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a float";
    default: return "a binary value";
  }
}

json parse_json(std::string_view text, std::string_view source) {
  DuplicateKeyFinder finder;
  json result;
  try {
    result = json::parse(text, [&](int, json::parse_event_t event, json& parsed) {
      return finder.on_event(event, parsed);
    });
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", source, strip_exception_prefix(e.what()));
  }
  MNEMO_CHECK(finder.duplicate.empty(), "{}: invalid JSON: duplicate key '{}'", source,
              finder.duplicate);
  return result;
}

json load_json_file(const std::string& path) {
  return parse_json(read_file(path), path);
}

json merge_config(const json& defaults, const json& user, std::string_view source) {
  return merge_at(defaults, user, source, "");
}

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t code = 0, least = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 1, code = c & 0x1F, least = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, code = c & 0x0F, least = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, code = c & 0x07, least = 0x10000;
    } else {
      return false;  // a continuation byte first, or 0xF8..0xFF
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= text.size() || (byte(i + k) & 0xC0) != 0x80) return false;
      code = (code << 6) | (byte(i + k) & 0x3F);
    }
    if (code < least || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

void apply_override(json& config, std::string_view assignment) {
  MNEMO_CHECK(is_valid_utf8(assignment), "--set: the assignment is not valid UTF-8");
  std::string source = "--set " + std::string(assignment);
  size_t equals = assignment.find('=');
  MNEMO_CHECK(equals != std::string_view::npos && equals > 0,
              "{}: expected key=value (e.g. train.lr=3e-4)", source);
  std::string key(assignment.substr(0, equals));
  std::string_view text = assignment.substr(equals + 1);

  // Find the target: a dotted path, or a bare key that must be unique.
  std::string path = key;
  if (key.find('.') == std::string::npos) {
    std::vector<std::string> found;
    find_key(config, key, "", found);
    if (found.empty()) fail("{}: unknown key '{}'", source, key);
    if (found.size() > 1) {
      std::string candidates;
      for (const std::string& f : found) candidates += (candidates.empty() ? "" : ", ") + f;
      fail("{}: ambiguous key '{}' (matches {}; write one of those)", source, key, candidates);
    }
    path = found[0];
  }
  json* target = &config;
  for (const std::string& part : split_dots(path)) {
    if (!target->is_object() || !target->contains(part)) {
      fail("{}: unknown key '{}'", source, path);
    }
    target = &(*target)[part];
  }

  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || target->is_string()) value = std::string(text);
  *target = checked_value(*target, value, source, path);
}

}  // namespace mnemo::io
