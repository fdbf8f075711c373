// JSON read from files (model configs, checkpoint metadata, safetensors headers): a parser with a nesting limit and
// short excerpts of values for error messages, so that no input can overflow the stack or flood a message.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"

namespace tessera {

// How deeply arrays and objects may nest in JSON that tessera reads. Its own files nest at most 4 levels (a
// checkpoint's trainer options); nlohmann's dump(), comparison and copies recurse once per level, so 100,000 levels
// overflow the stack. 64 keeps every use far from that while leaving room for owner-defined metadata.
inline constexpr int kMaxJsonDepth = 64;

namespace detail {

struct JsonTooDeep {};

// Parses [first, last) as JSON nesting at most kMaxJsonDepth levels. `context` starts the error message ("ViTConfig:
// the config"); `callback`, when given, sees every event as nlohmann's parser callback would (its return value is
// honoured). Every failure is a tessera::Error.
template <class Json = nlohmann::json>
Json parse_json(const char* first, const char* last, const std::string& context,
                const typename Json::parser_callback_t& callback = nullptr) {
  using Event = typename Json::parse_event_t;
  const typename Json::parser_callback_t limited = [&](int depth, Event event, Json& parsed) {
    // `depth` counts the containers already open around this event.
    if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth) throw JsonTooDeep{};
    return callback ? callback(depth, event, parsed) : true;
  };
  try {
    return Json::parse(first, last, limited);
  } catch (const JsonTooDeep&) {
    fail(context, " nests arrays and objects more than ", kMaxJsonDepth, " levels deep");
  } catch (const typename Json::exception& e) {
    fail(context, " is not valid JSON: ", e.what());
  }
}

template <class Json = nlohmann::json>
Json parse_json(std::string_view text, const std::string& context,
                const typename Json::parser_callback_t& callback = nullptr) {
  return parse_json<Json>(text.data(), text.data() + text.size(), context, callback);
}

// A compact, bounded rendering of `value` for an error message: at most about `max_chars` characters and two levels
// of nesting, with "..." where something was left out. Never recurses deeper than that, whatever the value.
template <class Json>
std::string json_excerpt(const Json& value, size_t max_chars = 80) {
  std::string out;
  const auto append = [&](auto&& self, const Json& v, int level) -> void {
    if (out.size() >= max_chars) return;
    if (v.is_object() || v.is_array()) {
      const bool object = v.is_object();
      out += object ? '{' : '[';
      if (level >= 2 && !v.empty()) {
        out += "...";
      } else {
        bool first = true;
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (out.size() >= max_chars) {
            out += "...";
            break;
          }
          if (!first) out += ',';
          first = false;
          if (object) out += Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace) + ':';
          self(self, *it, level + 1);
        }
      }
      out += object ? '}' : ']';
      return;
    }
    std::string scalar = v.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (scalar.size() > max_chars) scalar = scalar.substr(0, max_chars) + "...";
    out += scalar;
  };
  append(append, value, 0);
  if (out.size() > max_chars + 8) out = out.substr(0, max_chars) + "...";
  return out;
}

}  // namespace detail
}  // namespace tessera
