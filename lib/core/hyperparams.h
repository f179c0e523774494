// Named options with defaults (an attention variant's hyperparameters, a task's options) and the one
// resolver that fills in the defaults and rejects unknown keys and values of the wrong kind.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lra {

struct HyperParam {
  std::string name;
  nlohmann::json default_value;
  std::string help;
};

bool has_hyperparam(const std::vector<HyperParam>& params, const std::string& key);
// The names, for messages ("none" when there are none).
std::string hyperparam_list(const std::vector<HyperParam>& params);

// The defaults of `params` overridden by `given` (a JSON object or null). An unknown key, or a value of
// another kind than its default (any number stands for any number), throws naming `owner` (e.g.
// "attention 'softmax'", "task 'pathfinder'") and `noun` ("hyperparameter", "option"), and listing the
// valid names.
nlohmann::json resolve_hyperparams(const std::vector<HyperParam>& params, const nlohmann::json& given,
                                   const std::string& owner, const std::string& noun);

}  // namespace lra
