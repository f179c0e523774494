#include "core/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace lra {

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  LRA_CHECK(!ec, "cannot create folder '{}': {}; choose another location", path, ec.message());
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) make_dirs(p.parent_path().string());
  tmp_ = fmt::format("{}.tmp.{}", path_, static_cast<long>(getpid()));
  f_ = std::fopen(tmp_.c_str(), "wb");
  LRA_CHECK(f_ != nullptr, "cannot open '{}' for writing: {}; check the folder's permissions or choose another "
            "output folder", tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::fail(int err) {
  std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
  LRA_FAIL("could not write '{}': {}; '{}' was left as it was. Free some space or choose another output folder",
           tmp_, std::strerror(err), path_);
}

void AtomicFile::write(const void* data, size_t bytes) {
  LRA_CHECK(f_ != nullptr, "write to '{}' after commit", path_);
  if (std::fwrite(data, 1, bytes, f_) != bytes) fail(errno);
}

void AtomicFile::commit() {
  LRA_CHECK(f_ != nullptr, "'{}' committed twice", path_);
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0) fail(errno);
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    LRA_FAIL("could not write '{}': {}; '{}' was left as it was", tmp_, std::strerror(err), path_);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    LRA_FAIL("could not rename '{}' to '{}': {}", tmp_, path_, std::strerror(err));
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot read '{}': {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string file_checksum(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot read '{}' to checksum it: {}", path, std::strerror(errno));
  Fnv1a64 sum;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof buf);
    sum.add(buf, static_cast<size_t>(f.gcount()));
  }
  return fmt::format("fnv1a64:{:016x}", sum.h);
}

}  // namespace lra
