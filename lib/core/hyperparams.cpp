#include "core/hyperparams.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"

namespace lra {

bool has_hyperparam(const std::vector<HyperParam>& params, const std::string& key) {
  for (const auto& p : params)
    if (p.name == key) return true;
  return false;
}

std::string hyperparam_list(const std::vector<HyperParam>& params) {
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name);
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

nlohmann::json resolve_hyperparams(const std::vector<HyperParam>& params, const nlohmann::json& given,
                                   const std::string& owner, const std::string& noun) {
  LRA_CHECK(given.is_object() || given.is_null(), "the {}s of {} must be a JSON object, got {}", noun, owner,
            given.dump());
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : params) out[p.name] = p.default_value;
  for (auto it = given.begin(); it != given.end(); ++it) {
    LRA_CHECK(out.contains(it.key()), "{} has no {} '{}'; it takes: {}", owner, noun, it.key(),
              hyperparam_list(params));
    const nlohmann::json& def = out[it.key()];
    const bool same_kind = (def.is_number() && it.value().is_number()) || def.type() == it.value().type();
    LRA_CHECK(same_kind, "{} {} '{}' expects a value like {}, got {}", owner, noun, it.key(), def.dump(),
              it.value().dump());
    out[it.key()] = it.value();
  }
  return out;
}

}  // namespace lra
