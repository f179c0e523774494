#include "core/arena.h"

#include <cstdlib>
#include <new>

#include "core/check.h"

namespace lra {

namespace {
class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = std::aligned_alloc(Arena::kAlign, align_up(bytes == 0 ? Arena::kAlign : bytes, Arena::kAlign));
    LRA_CHECK(p != nullptr,
              "out of host memory: could not allocate {:.1f} MiB; lower batch_size or max_length "
              "(--batch, --set max_length=...)",
              bytes / 1048576.0);
    return p;
  }
  void deallocate(void* p) override { std::free(p); }
  const char* where() const override { return "host"; }
};
}  // namespace

Allocator& host_allocator() {
  static HostAllocator a;
  return a;
}

Arena::~Arena() {
  if (base_ != nullptr) alloc_->deallocate(base_);
}

void Arena::reserve(size_t bytes) {
  LRA_CHECK(base_ == nullptr, "arena '{}' already has a block", name_);
  base_ = static_cast<char*>(alloc_->allocate(bytes));
  capacity_ = bytes;
  used_ = 0;
  peak_ = 0;
}

void* Arena::take_bytes(size_t bytes) {
  const size_t offset = align_up(used_, kAlign);
  const size_t end = offset + bytes;
  if (base_ != nullptr) {
    LRA_CHECK(end <= capacity_,
              "arena '{}' ({}) overflow: {} bytes asked at offset {}, capacity {}; the memory plan "
              "missed a buffer",
              name_, alloc_->where(), bytes, offset, capacity_);
  }
  used_ = end;
  if (used_ > peak_) peak_ = used_;
  return base_ == nullptr ? nullptr : base_ + offset;
}

}  // namespace lra
