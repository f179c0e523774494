#include "core/files.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/check.h"
#include "core/digest.h"

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

Digest::Digest(const std::string& algorithm) : algorithm_(algorithm), ctx_(EVP_MD_CTX_new()) {
  const EVP_MD* md = EVP_get_digestbyname(algorithm.c_str());
  LRA_CHECK(md != nullptr, "OpenSSL has no digest named '{}'", algorithm);
  LRA_CHECK(ctx_ != nullptr && EVP_DigestInit_ex(ctx_, md, nullptr) == 1, "OpenSSL could not start a {} digest",
            algorithm);
}

Digest::~Digest() { EVP_MD_CTX_free(ctx_); }

void Digest::add(const void* data, size_t bytes) {
  LRA_CHECK(EVP_DigestUpdate(ctx_, data, bytes) == 1, "OpenSSL's {} digest failed", algorithm_);
}

std::string Digest::hex() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  LRA_CHECK(EVP_DigestFinal_ex(ctx_, out, &len) == 1, "OpenSSL's {} digest failed", algorithm_);
  std::string h;
  for (unsigned int i = 0; i < len; ++i) h += fmt::format("{:02x}", out[i]);
  return h;
}

std::string file_digest(const std::string& path, const std::string& algorithm) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot read '{}' to compute its {}: {}", path, algorithm, std::strerror(errno));
  Digest digest(algorithm);
  std::vector<char> buf(size_t{1} << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    digest.add(buf.data(), static_cast<size_t>(f.gcount()));
  }
  LRA_CHECK(!f.bad(), "error while reading '{}' to compute its {}", path, algorithm);
  return digest.hex();
}

std::string file_checksum(const std::string& path) { return "sha256:" + file_digest(path, "sha256"); }

}  // namespace lra
