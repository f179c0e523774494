#include "train/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "attn/attention.h"
#include "core/check.h"
#include "core/files.h"
#include "tasks/task.h"

namespace lra {

namespace {

std::string pool_name(Pool p) { return p == Pool::Cls ? "CLS" : p == Pool::Mean ? "MEAN" : "MAX"; }
Pool parse_pool(const std::string& s) {
  if (s == "CLS" || s == "cls") return Pool::Cls;
  if (s == "MEAN" || s == "mean") return Pool::Mean;
  if (s == "MAX" || s == "max") return Pool::Max;
  LRA_FAIL("classifier_pool must be CLS, MEAN or MAX, got '{}'", s);
}
std::string gelu_name(GeluKind g) { return g == GeluKind::Tanh ? "tanh" : "exact"; }
GeluKind parse_gelu(const std::string& s) {
  if (s == "tanh") return GeluKind::Tanh;
  if (s == "exact") return GeluKind::Exact;
  LRA_FAIL("gelu must be tanh (LRA/Flax) or exact (PyTorch's default), got '{}'", s);
}

// Keys that the task sets and a user may not override.
const char* const kTaskOwned[] = {"vocab_size", "num_classes"};
// Keys that are run options rather than hyperparameters: the CLI has flags for them.
const char* const kRunKeys[] = {"task", "attn", "preset", "device"};

bool same_kind(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) return !(a.is_number_integer() && b.is_number_float());
  return a.type() == b.type();
}

}  // namespace

nlohmann::json RunConfig::to_json() const {
  nlohmann::json j;
  j["task"] = task;
  j["attn"] = model.attn;
  j["preset"] = preset;
  j["device"] = device;
  j["seed"] = seed;
  j["data_seed"] = data_seed;
  j["threads"] = threads;
  j["vocab_size"] = model.vocab_size;
  j["num_classes"] = model.num_classes;
  j["max_length"] = model.max_length;
  j["emb_dim"] = model.emb_dim;
  j["num_heads"] = model.num_heads;
  j["num_layers"] = model.num_layers;
  j["qkv_dim"] = model.qkv_dim;
  j["mlp_dim"] = model.mlp_dim;
  j["dropout_rate"] = model.dropout_rate;
  j["attention_dropout_rate"] = model.attention_dropout_rate;
  j["classifier_pool"] = pool_name(model.pool);
  j["learn_pos_emb"] = model.learn_pos_emb;
  j["pos_emb"] = model.rope ? "rope" : "absolute";
  j["qkv_bias"] = model.qkv_bias;
  j["layernorm_eps"] = model.layernorm_eps;
  j["gelu"] = gelu_name(model.gelu);
  j["attn_params"] = model.attn_params;
  j["batch_size"] = batch_size;
  j["num_train_steps"] = num_train_steps;
  j["learning_rate"] = learning_rate;
  j["factors"] = factors;
  j["warmup"] = warmup;
  j["steps_per_cycle"] = steps_per_cycle;
  j["weight_decay"] = weight_decay;
  j["beta1"] = beta1;
  j["beta2"] = beta2;
  j["adam_eps"] = adam_eps;
  j["grad_clip_norm"] = grad_clip_norm;
  j["eval_frequency"] = eval_frequency;
  j["n_train"] = n_train;
  j["n_val"] = n_val;
  j["n_test"] = n_test;
  j["task_params"] = task_params;
  return j;
}

RunConfig RunConfig::from_json(const nlohmann::json& j) {
  const nlohmann::json ref = RunConfig().to_json();
  for (auto it = j.begin(); it != j.end(); ++it) {
    LRA_CHECK(ref.contains(it.key()), "unknown config key '{}'; valid keys: {}", it.key(),
              fmt::join(config_keys(), ", "));
    LRA_CHECK(same_kind(ref[it.key()], it.value()), "config key '{}' expects a value like {}, got {}", it.key(),
              ref[it.key()].dump(), it.value().dump());
  }
  RunConfig c;
  auto get = [&](const char* key, auto& field) {
    if (j.contains(key)) j.at(key).get_to(field);
  };
  get("task", c.task);
  get("attn", c.model.attn);
  get("preset", c.preset);
  get("device", c.device);
  get("seed", c.seed);
  get("data_seed", c.data_seed);
  get("threads", c.threads);
  get("vocab_size", c.model.vocab_size);
  get("num_classes", c.model.num_classes);
  get("max_length", c.model.max_length);
  get("emb_dim", c.model.emb_dim);
  get("num_heads", c.model.num_heads);
  get("num_layers", c.model.num_layers);
  get("qkv_dim", c.model.qkv_dim);
  get("mlp_dim", c.model.mlp_dim);
  get("dropout_rate", c.model.dropout_rate);
  get("attention_dropout_rate", c.model.attention_dropout_rate);
  if (j.contains("classifier_pool")) c.model.pool = parse_pool(j.at("classifier_pool").get<std::string>());
  get("learn_pos_emb", c.model.learn_pos_emb);
  if (j.contains("pos_emb")) {
    const std::string p = j.at("pos_emb").get<std::string>();
    LRA_CHECK(p == "absolute" || p == "rope",
              "pos_emb must be absolute (positions added to the embeddings: sinusoidal, or learned with "
              "learn_pos_emb=true) or rope (rotary embeddings of queries and keys), got '{}'",
              p);
    c.model.rope = p == "rope";
    // learn_pos_emb chooses the absolute embedding (ListOps and Image default to learned ones); rotary
    // embeddings add none, so it does not apply and is recorded false.
    if (c.model.rope) c.model.learn_pos_emb = false;
  }
  get("qkv_bias", c.model.qkv_bias);
  get("layernorm_eps", c.model.layernorm_eps);
  if (j.contains("gelu")) c.model.gelu = parse_gelu(j.at("gelu").get<std::string>());
  get("attn_params", c.model.attn_params);
  get("batch_size", c.batch_size);
  get("num_train_steps", c.num_train_steps);
  get("learning_rate", c.learning_rate);
  get("factors", c.factors);
  get("warmup", c.warmup);
  get("steps_per_cycle", c.steps_per_cycle);
  get("weight_decay", c.weight_decay);
  get("beta1", c.beta1);
  get("beta2", c.beta2);
  get("adam_eps", c.adam_eps);
  get("grad_clip_norm", c.grad_clip_norm);
  get("eval_frequency", c.eval_frequency);
  get("n_train", c.n_train);
  get("n_val", c.n_val);
  get("n_test", c.n_test);
  get("task_params", c.task_params);
  // The task's options, resolved (unknown keys and values of the wrong kind throw); then the task decides
  // the model's input and output sizes (a config that states them, as records, checkpoints and test
  // fixtures do, keeps its own) and whether an example is a pair of documents.
  const Task& task_def = find_task(c.task);
  c.task_params = resolve_task_params(task_def, c.task_params);
  const TaskShape shape = task_def.shape(c.task_params);
  if (c.model.vocab_size == 0) c.model.vocab_size = shape.vocab_size;
  if (c.model.num_classes == 0) c.model.num_classes = shape.num_classes;
  c.model.dual = shape.pairs;
  if (shape.pairs) c.model.interaction = shape.interaction == "concat" ? Interaction::Concat : Interaction::Nli;
  return c;
}

DataOptions data_options(const RunConfig& c, const std::string& data_dir, const std::string& cache_dir, bool quiet) {
  DataOptions d;
  d.data_dir = data_dir;
  d.cache_dir = cache_dir;
  d.data_seed = c.data_seed;
  d.max_length = c.model.max_length;
  d.n_train = c.n_train;
  d.n_val = c.n_val;
  d.n_test = c.n_test;
  d.quiet = quiet;
  d.task_params = c.task_params;
  return d;
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  const nlohmann::json ref = RunConfig().to_json();
  for (auto it = ref.begin(); it != ref.end(); ++it) keys.push_back(it.key());
  return keys;
}

void merge_config(nlohmann::json& base, const nlohmann::json& overrides, const std::string& origin) {
  LRA_CHECK(overrides.is_object(), "{}: expected a JSON object of config keys, got {}", origin, overrides.dump());
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    const std::string& key = it.key();
    for (const char* k : kTaskOwned)
      LRA_CHECK(key != k, "{}: '{}' is set by the task and cannot be overridden", origin, key);
    if (key == "attn_params" || key == "task_params") {
      // Checked against the variant's hyperparameters or the task's options when the config is resolved.
      LRA_CHECK(it.value().is_object(), "{}: {} must be a JSON object, got {}", origin, key, it.value().dump());
      for (auto hp = it.value().begin(); hp != it.value().end(); ++hp) base[key][hp.key()] = hp.value();
      continue;
    }
    if (base.contains(key)) {
      LRA_CHECK(same_kind(base[key], it.value()), "{}: config key '{}' expects a value like {}, got {}", origin,
                key, base[key].dump(), it.value().dump());
      base[key] = it.value();
      continue;
    }
    const Task& task = find_task(base.at("task").get<std::string>());
    bool task_option = false;
    for (const HyperParam& p : task.params()) task_option = task_option || p.name == key;
    if (task_option) {
      base["task_params"][key] = it.value();
      continue;
    }
    const AttnInfo& info = find_attention(base.at("attn").get<std::string>());
    // `causal` always belongs to the attention: resolving it explains a variant without a causal mode.
    LRA_CHECK(has_hyperparam(info, key) || key == "causal",
              "{}: unknown config key '{}'; valid keys: {}; task '{}' takes: {}; attention '{}' takes: {}", origin,
              key, fmt::join(config_keys(), ", "), task.name(), hyperparam_list(task.params()), info.name,
              hyperparam_list(info));
    base["attn_params"][key] = it.value();
  }
}

std::pair<std::string, nlohmann::json> parse_set(const std::string& arg) {
  const auto eq = arg.find('=');
  LRA_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value, got '{}'", arg);
  const std::string key = arg.substr(0, eq), text = arg.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  return {key, value};
}

RunConfig resolve_config(const std::string& task_name, const std::string& attn, const std::string& preset,
                         const std::string& config_file, const std::vector<std::string>& sets) {
  const Task& task = find_task(task_name);
  find_attention(attn);
  nlohmann::json j = RunConfig().to_json();
  j["task"] = task.name();
  j["attn"] = attn;
  j["preset"] = preset;
  merge_config(j, task.defaults(), fmt::format("task '{}' defaults", task.name()));
  const auto presets = task.presets();
  const auto it = presets.find(preset);
  if (it == presets.end()) {
    std::vector<std::string> names;
    for (const auto& [name, _] : presets) names.push_back(name);
    LRA_FAIL("task '{}' has no preset '{}'; valid presets: {}", task.name(), preset, fmt::join(names, ", "));
  }
  merge_config(j, it->second, fmt::format("preset '{}'", preset));
  if (!config_file.empty()) {
    nlohmann::json file = nlohmann::json::parse(read_file(config_file), nullptr, false);
    LRA_CHECK(!file.is_discarded(), "config file '{}' is not valid JSON", config_file);
    for (const char* k : kRunKeys)
      LRA_CHECK(!file.contains(k), "config file '{}': '{}' is chosen with its command-line flag (--{})",
                config_file, k, k);
    merge_config(j, file, fmt::format("config file '{}'", config_file));
  }
  for (const auto& s : sets) {
    auto [key, value] = parse_set(s);
    for (const char* k : kRunKeys)
      LRA_CHECK(key != k, "--set {}: use the --{} flag instead", key, k);
    merge_config(j, nlohmann::json{{key, value}}, fmt::format("--set {}", s));
  }
  RunConfig c = RunConfig::from_json(j);
  c.model.attn_params = resolve_attention_params(find_attention(attn), c.model.attn_params);
  c.model.validate();
  LRA_CHECK(c.batch_size > 0, "batch_size must be positive, got {}", c.batch_size);
  LRA_CHECK(c.num_train_steps > 0, "num_train_steps must be positive, got {}", c.num_train_steps);
  LRA_CHECK(c.eval_frequency > 0, "eval_frequency must be positive, got {}", c.eval_frequency);
  return c;
}

nlohmann::json preset_config_json(const std::string& task, const std::string& attn, const std::string& preset) {
  return resolve_config(task, attn, preset, "", {}).to_json();
}

}  // namespace lra
