// The device registry: the CPU, and whatever device libraries registered themselves at start-up.
#include <type_traits>

#include "backend/backend.h"
#include "core/check.h"

namespace lra {

DeviceEntry cpu_device();  // cpu_backend.cpp

namespace {

std::vector<DeviceEntry>& registry() {
  static std::vector<DeviceEntry> devices{cpu_device()};
  return devices;
}

const DeviceEntry* find_device(Device d) {
  for (const DeviceEntry& e : registry())
    if (e.device == d) return &e;
  return nullptr;
}

}  // namespace

bool register_device(DeviceEntry entry) {
  LRA_CHECK(find_device(entry.device) == nullptr, "device '{}' registered twice", device_name(entry.device));
  registry().push_back(std::move(entry));
  return true;
}

const std::vector<DeviceEntry>& device_registry() { return registry(); }

const char* device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& s) {
  for (const Device d : {Device::Cpu, Device::Cuda}) {
    if (s != device_name(d)) continue;
    LRA_CHECK(find_device(d) != nullptr,
              "--device {}: this build has no CUDA backend (it was configured without a CUDA toolkit or with "
              "-DLRA_CUDA=OFF); rebuild with the toolkit under /usr/local/cuda, or use --device cpu",
              s);
    return d;
  }
  LRA_FAIL("unknown device '{}'; valid devices: cpu, cuda", s);
}

bool has_device_path(const std::string& attn, Device device) {
  const DeviceEntry* e = find_device(device);
  return e != nullptr && e->has_attention(attn);
}

template <class T>
std::unique_ptr<Backend<T>> make_backend(Device device) {
  const DeviceEntry* e = find_device(device);
  LRA_CHECK(e != nullptr, "device '{}' has no backend in this build; use --device cpu", device_name(device));
  if constexpr (std::is_same_v<T, float>) {
    return e->make_f32();
  } else {
    LRA_CHECK(e->make_f64 != nullptr,
              "the {} backend runs in float only; double precision is for the CPU's gradient tests",
              device_name(device));
    return e->make_f64();
  }
}

template std::unique_ptr<Backend<float>> make_backend<float>(Device);
template std::unique_ptr<Backend<double>> make_backend<double>(Device);

}  // namespace lra
