// Cryptographic digests fed in pieces (OpenSSL's EVP), for checksums people can compare with published
// ones: SHA-256 of data files in run records, MD5 of downloads.
#pragma once

#include <cstddef>
#include <string>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace lra {

class Digest {
 public:
  explicit Digest(const std::string& algorithm);  // OpenSSL's name: "sha256", "md5"
  ~Digest();
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void add(const void* data, size_t bytes);
  std::string hex();  // the digest of everything added, in lower-case hex; ends the digest

 private:
  std::string algorithm_;
  evp_md_ctx_st* ctx_;
};

}  // namespace lra
