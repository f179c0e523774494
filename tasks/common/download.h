// Fetching the official files of LRA's tasks (docs/data-formats.md section 8): downloads through libcurl
// (http, https, and file:// for local mirrors and tests), with a progress bar, resume of a partial
// download, MD5 verification through OpenSSL's EVP where a checksum is published, and extraction of
// the folders a task needs from LRA's release tarball.
//
// Facts relied on: aclImdb_v1.tar.gz (MD5 7c2ac02c03563afcf9b574c7e56c153a) and
// cifar-10-binary.tar.gz (MD5 c32a1d4ab5d03f1284b67883e8d87530) are read by the text and image tasks
// as they are; lra_release.gz (~7.7 GB, no published checksum) is a gzipped tar whose members sit
// under lra_release/ (extracted, the release is lra_release/lra_release/...), holding listops-1000/,
// tsv_data/ (retrieval) and pathfinder{32,64,128,256}/. The task readers search
// <data dir>/lra_release/lra_release/<folder>, which is where extraction puts each folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lra {

// One official archive and what a task needs from it.
struct OfficialArchive {
  std::string file;  // the file name under the data folder, e.g. "aclImdb_v1.tar.gz"
  std::string url;   // the official URL
  std::string md5;   // the published MD5 (hex), "" when none is published
  // Release folders to extract (lra_release.gz): the task reads <data dir>/lra_release/lra_release/<folder>.
  // Empty: the task reads the archive itself.
  std::vector<std::string> folders;
};

// The archive task `task` needs: listops, text, image, pathfinder, pathx or retrieval. Throws listing
// those names for any other.
OfficialArchive official_archive(const std::string& task);
std::vector<std::string> fetchable_tasks();

// The MD5 of a file's bytes as 32 lowercase hex digits (OpenSSL EVP).
std::string md5_file(const std::string& path);

// Downloads `url` to `dest` through `dest`.part: a .part left by an earlier try is continued with a
// range request (a server that ignores the range, or a .part longer than the file, starts over from
// byte 0); when `md5` is not empty the complete file must have that MD5, else the .part is removed
// and the error names both checksums; `dest` appears only complete and verified (a rename). Progress
// goes to stderr when `progress` is set: a bar on a terminal, plain lines otherwise. A failed
// transfer throws naming the URL and the HTTP status or curl's error, keeps the .part for a later
// resume, and ends with `manual`, which should say where to put the file by hand.
void download(const std::string& url, const std::string& dest, const std::string& md5, bool progress,
              const std::string& manual);

// The folder <dest_root>/lra_release/lra_release/<folder> where extraction puts a release folder.
std::string release_folder_path(const std::string& dest_root, const std::string& folder);

// Extracts from the tar archive `archive` (gzip or not) every member under one of `folders` (after
// any leading "lra_release/" components of its name) to release_folder_path(dest_root, folder). All of
// them are written into a temporary folder under dest_root first and each folder is renamed into place
// at the end, so an interrupted extraction leaves no partial folder. A folder that already exists
// with files in it is an error (remove it first); a folder the archive lacks is an error naming it;
// so is a member name with a ".." component.
void extract_release_folders(const std::string& archive, const std::string& dest_root,
                             const std::vector<std::string>& folders, bool progress);

// What fetch_official() did for one task.
struct FetchResult {
  std::string task;
  std::string archive;                 // the archive's full path under the data folder
  std::string action;                  // what happened to it, in words
  std::vector<std::string> extracted;  // release folders extracted now
  std::vector<std::string> present;    // release folders that were already extracted
};

// Makes the official files of each task available under `data_dir`: downloads its archive from the
// official URL, or from `mirror` + file name when `mirror` is not empty; skips an archive already
// present (after checking its published MD5; a mismatch is an error) and, for lra_release.gz, extracts
// the folders the tasks need, once for all of them, skipping the download when they are all extracted
// already. Tasks sharing an archive share one download and one pass of extraction.
std::vector<FetchResult> fetch_official(const std::vector<std::string>& tasks, const std::string& data_dir,
                                        const std::string& mirror, bool progress);

}  // namespace lra
