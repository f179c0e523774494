// Reading the compressed files the datasets ship as: whole gzip files through zlib (the IDX files of
// MNIST and Fashion-MNIST) and the regular files inside a tar archive through libarchive
// (aclImdb_v1.tar.gz, cifar-10-binary.tar.gz).
//
// Format facts relied on: a gzip file may hold several members, which decompress to their
// concatenation (zlib's gzread does this, and reads a file that is not gzip as it is); a tar archive
// is a sequence of (header, data) entries whose data can be skipped without decompressing it into
// memory; member names are relative paths with '/' separators, sometimes starting with "./".
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lra {

// The decompressed contents of a gzip file (a file that is not gzip is returned as it is). Throws
// lra::Error naming the file when it cannot be opened, is corrupt or ends in the middle of a
// compressed stream (a truncated download).
std::string read_gzip(const std::string& path);

// Visits the regular files of the archive at `path` (tar, optionally gzip/bzip2/xz compressed) in
// archive order. want(name) decides whether read(name, contents) is called with the member's
// contents; the others are skipped. Throws lra::Error naming the archive (and the member, when one
// is being read) when the file is missing, is not an archive, or is truncated or corrupt.
void for_each_archive_file(const std::string& path,
                           const std::function<bool(const std::string& name)>& want,
                           const std::function<void(const std::string& name, std::string& contents)>& read);

// The components of a member name, without empty and "." components ("./aclImdb//train/x.txt" ->
// {"aclImdb", "train", "x.txt"}).
std::vector<std::string> path_components(const std::string& name);

}  // namespace lra
