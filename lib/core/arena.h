// Arenas: memory is planned, not discovered.
//
// Each buffer class (parameters, gradients, optimizer state, activations, scratch) lives in one block.
// Owners lay their buffers out with a function that calls take<T>(n) in a fixed order; it runs once on
// an arena without a block (which only counts bytes), the block is then allocated at exactly that
// size, and the same function runs again to hand out the pointers. The arena remembers the most it
// ever handed out (its peak), which is what run records report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lra {

// Where an arena's block comes from (host memory, device memory).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) = 0;
  virtual const char* where() const = 0;
};

// 64-byte aligned host memory.
Allocator& host_allocator();

class Arena {
 public:
  static constexpr size_t kAlign = 64;

  Arena(std::string name, Allocator& alloc) : name_(std::move(name)), alloc_(&alloc) {}
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Allocates the block. Called once, after a counting pass sized it.
  void reserve(size_t bytes);
  bool has_block() const { return base_ != nullptr; }

  // Takes n elements of T. Without a block it only counts and returns nullptr.
  template <class T>
  T* take(size_t n) {
    return static_cast<T*>(take_bytes(n * sizeof(T)));
  }
  void* take_bytes(size_t bytes);

  // Starts a new layout pass (counting or assigning) from offset zero.
  void rewind() { used_ = 0; }

  size_t used() const { return used_; }
  size_t peak() const { return peak_; }

 private:
  std::string name_;
  Allocator* alloc_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t peak_ = 0;
};

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Lays consecutive pieces out in one scratch buffer, each starting on an `align` boundary (Arena::kAlign
// unless told). From a null base it only measures (every piece is nullptr), so the one function that
// carves a buffer also sizes it: used() is then the bytes the pieces need.
class ScratchCarver {
 public:
  explicit ScratchCarver(void* base, size_t align = Arena::kAlign) : base_(static_cast<char*>(base)), align_(align) {}
  // n elements of E.
  template <class E>
  E* take(size_t n) {
    E* p = base_ == nullptr ? nullptr : reinterpret_cast<E*>(base_ + used_);
    used_ += align_up(n * sizeof(E), align_);
    return p;
  }
  template <class E>
  void take(E*& p, size_t n) {
    p = take<E>(n);
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t align_;
  size_t used_ = 0;
};

}  // namespace lra
