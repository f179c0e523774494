// The CUDA backend: lib/cuda's ops and attention variants behind the Backend interface.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "backend/backend.h"

namespace lra::cuda {

// Throws, saying what is missing, when no usable GPU is present.
std::unique_ptr<Backend<float>> make_backend();

// The GPU's name, memory, compute capability, driver and runtime versions (for run records).
nlohmann::json device_info(int device);

}  // namespace lra::cuda
