// A generic, typed JSON configuration layer.
//
// The program that reads a config supplies its schema as a *defaults* object: sections of
// keys with default values, e.g. {"model": {"hidden_size": 128, ...}, "train": {"lr": 3e-4,
// ...}, "data": {"path": "", ...}}. A user file may set any subset of those keys;
// merge_config checks every key exists and every value has the default's type, and returns
// the defaults with the user's values in place. `--set key=value` overrides then go through
// apply_override, with the same checks. The type of a default decides what is accepted:
//
//   default              accepted user value
//   integer (3)          an integer (3, or an integral float such as 1e4, stored as integer)
//   float (3e-4)         any number, stored as float
//   bool / string        the same type
//   array                an array (elements typed like the default's first element, if any)
//   object (a section)   an object, merged key by key
//   null                 anything (an optional value with no fixed type)
//
// Errors are one line naming the source and the dotted key: "run.json: unknown key
// 'train.lrr'", "--set train.steps=3.5: key 'train.steps' expects an integer, got 3.5".
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mnemo::io {

// Parses JSON text strictly: a syntax error or a duplicate key in any object is an Error
// naming source and the position ("cfg.json: invalid JSON at line 3, column 5: ...").
nlohmann::json parse_json(std::string_view text, std::string_view source);

// read_file + parse_json, with the file name as source.
nlohmann::json load_json_file(const std::string& path);

// defaults with user's values merged in (see the table above); source names the user config
// in error messages (a file name, or "--set ..."). Both must be objects.
nlohmann::json merge_config(const nlohmann::json& defaults, const nlohmann::json& user,
                            std::string_view source);

// Applies one "key=value" override in place. key is "section.key" (any depth of dots) or a
// bare key that exists in exactly one place. value is parsed as JSON when it parses (numbers,
// true/false, null, "quoted strings", [arrays], {objects}), else taken as a string; for a
// string key the raw text is always the value (so --set data.path=123 works).
void apply_override(nlohmann::json& config, std::string_view assignment);

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): what a JSON string may hold. An override that is not is an error (it could not
// be written back to run_config.json).
bool is_valid_utf8(std::string_view text);

// The JSON type name used in messages: "an integer", "a float", "a string", ...
std::string json_type_phrase(const nlohmann::json& value);

}  // namespace mnemo::io
