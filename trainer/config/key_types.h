// The pieces of a config key (internal to the config library): how each type of value is named in messages, read
// from YAML, written back and checked, and the Field that one row of the schema (schema.cpp) becomes.
#pragma once
#include <yaml-cpp/yaml.h>

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "trainer/config/config.h"

namespace ddpm::config_detail {

// " (did you mean 'cosine'?)" when a candidate is close to `wrong`, else "".
std::string did_you_mean(const std::string& wrong, const std::vector<std::string>& candidates);
// Shortest text that reads back as the same double, in positional notation where that stays short (0.0002, not
// 0.00020000000000000001 or 2e-04; 60, not 6e+01).
std::string format_double(double value);

// A path or name with a control character in it is a mistake (a stray carriage return at the end of a file
// lands in the last value), and could not be written back to YAML unchanged.
void reject_control_characters(const std::string& value);

// ---- What each type of key is: its name in messages, how it is read, how it is written -------------------------
template <class T>
inline constexpr bool kIsList = std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>;

template <class T>
std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  if constexpr (std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  if constexpr (std::is_same_v<T, std::string> || std::is_enum_v<T>) return "a string";
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "a list of integers";
  if constexpr (std::is_same_v<T, std::vector<double>>) return "a list of numbers";
}

template <class T>
std::vector<std::string> choice_list() {
  std::vector<std::string> names;
  if constexpr (std::is_enum_v<T>) {
    for (const auto& entry : choices(T{})) names.emplace_back(entry.second);
  }
  return names;
}

template <class T>
T scalar_as(const YAML::Node& node) {
  if (!node.IsScalar()) throw YAML::BadConversion(node.Mark());
  return node.as<T>();
}

// Throws YAML::BadConversion for a value of another type, std::invalid_argument for a bad one of the right type.
template <class T>
T read_value(const YAML::Node& node) {
  if constexpr (kIsList<T>) {
    if (!node.IsSequence()) throw YAML::BadConversion(node.Mark());
    T value;
    for (const YAML::Node& item : node) {
      try {
        value.push_back(scalar_as<typename T::value_type>(item));
      } catch (const YAML::BadConversion&) {
        const std::string shown = item.IsScalar() ? "'" + item.Scalar() + "'" : item.IsNull() ? "empty" : "not a single value";
        throw std::invalid_argument("entry " + std::to_string(value.size() + 1) + " of the list is " + shown +
                                    ", not a number" + (std::is_same_v<T, std::vector<int64_t>> ? " (an integer)" : ""));
      }
    }
    return value;
  } else if constexpr (std::is_enum_v<T>) {
    const std::string name = scalar_as<std::string>(node);
    reject_control_characters(name);
    for (const auto& [choice, text] : choices(T{})) {
      if (name == text) return choice;
    }
    const std::vector<std::string> names = choice_list<T>();
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("must be one of " + list + ", got '" + name + "'" + did_you_mean(name, names));
  } else {
    const T value = scalar_as<T>(node);
    if constexpr (std::is_same_v<T, std::string>) reject_control_characters(value);
    return value;
  }
}

// The value as YAML flow text: 0.001, [1, 2, 2], linear, true.
template <class T>
std::string value_text(const T& value) {
  if constexpr (kIsList<T>) {
    std::string text = "[";
    for (size_t i = 0; i < value.size(); ++i) text += (i ? ", " : "") + value_text(value[i]);
    return text + "]";
  } else if constexpr (std::is_enum_v<T>) {
    return choice_name(value);
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<T, double>) {
    return format_double(value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return value;
  } else {
    return std::to_string(value);
  }
}

// The value as the shape signature has always written it (doubles with ostream's 6 significant digits), so that
// the checkpoints of earlier builds still match: 0.9999 and [1, 2, 2] as in value_text, 0.1234567 as 0.123457.
template <class T>
std::string signature_text(const T& value) {
  if constexpr (std::is_same_v<T, std::vector<double>>) {
    std::string text = "[";
    for (size_t i = 0; i < value.size(); ++i) text += (i ? ", " : "") + signature_text(value[i]);
    return text + "]";
  } else if constexpr (std::is_same_v<T, double>) {
    std::ostringstream out;
    out << value;
    return out.str();
  } else {
    return value_text(value);
  }
}

template <class T>
void emit_value(YAML::Emitter& out, const T& value) {
  if constexpr (kIsList<T>) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : value) emit_value(out, item);
    out << YAML::EndSeq;
  } else if constexpr (std::is_same_v<T, double> || std::is_enum_v<T>) {
    out << value_text(value);
  } else {
    out << value;
  }
}

// ---- Checks: each throws std::invalid_argument with the reason -------------------------------------------------
// ---- Checks: each throws std::invalid_argument with the reason -------------------------------------------------
template <class T>
using Check = std::function<void(const T&)>;

Check<int64_t> at_least(int64_t minimum);
Check<int64_t> between(int64_t lo, int64_t hi);
Check<double> in_range(double lo, double hi, bool lo_open = false);
Check<std::vector<int64_t>> positive_list(bool allow_empty);
Check<std::string> not_empty();

// ---- A key of the schema ---------------------------------------------------------------------------------------
enum class Part { kRun, kShape };  // kShape: part of what must match to resume (model_shape_signature)

struct Field {
  std::string section;
  std::string key;
  std::string expected;              // the type, for messages: "an integer", "a list of numbers", ...
  std::vector<std::string> choices;  // an enum-like key's names
  std::string default_text;
  std::string help;
  Part part = Part::kRun;
  std::function<void(Config&, const YAML::Node&)> read;  // throws YAML::BadConversion / std::invalid_argument
  std::function<void(const Config&, YAML::Emitter&)> write;
  std::function<std::string(const Config&)> signature;  // for model_shape_signature
  std::function<void(Config&)> reset;  // to the default
  std::string path() const { return section + "." + key; }
};

// One row: where the value lives (the macro names the section and key after the field, so the two cannot drift),
// its default, its check, and a help line. The type comes from the field.

// The schema: every key of the config, in file order (schema.cpp).
const std::vector<Field>& schema();
// The sections in schema order; the field of "section.key" or null.
std::vector<std::string> section_names();
const Field* find_field(const std::string& path);

}  // namespace ddpm::config_detail
