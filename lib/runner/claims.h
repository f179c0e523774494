// Claims: how any number of workers (processes on one machine or many, sharing a folder over NFS or a
// cluster file system) split a grid's cells so that each cell runs once at a time.
//
// A cell's claims live in <out>/claims/ as files KEY.0, KEY.1, ...: an append-only log in which the
// highest number is the cell's state, either "claimed" (by host, pid, since when) or "released". Every
// change creates the next number with link(2) from a complete temporary file, which fails when the name
// exists: on NFS as on a local disk exactly one of the workers racing for a number gets it (a link whose
// reply was lost is recognised by the temporary's link count, as NFS lock files do). So taking a free
// cell, taking over a dead worker's cell and releasing are compare-and-swap steps, and two workers
// never hold one cell. The holder touches its file every timeout/10 (its heartbeat); a claim whose file
// is older than the timeout, measured on the folder's own clock (a file the reader touches there, so
// the nodes' clocks need not agree), belongs to a dead worker, and the next worker takes it over. So does
// a claim made on this machine (same boot and process namespace) by a process that no longer exists:
// a worker killed here is taken over at once.
// A worker that finds its claim taken over (it was stopped longer than the timeout) has lost the cell.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace lra {

// What the folder says about one cell.
struct ClaimInfo {
  int64_t gen = -1;       // the highest number; -1: never claimed
  bool claimed = false;   // false: released, or never claimed
  std::string host;       // the holder's host name, process id, start and Slurm job (if any)
  int64_t pid = 0;
  std::string since;
  std::string job;
  std::string machine;    // the holder's boot id and process namespace
  double age_s = 0;       // seconds since the holder's last heartbeat
  bool gone = false;      // claimed on this machine by a process that has exited
  bool stale = false;     // claimed, but gone or without a heartbeat for the timeout: the holder is dead
  bool live() const { return claimed && !stale; }
  std::string owner() const;  // "host pid N"
};

class Claim;

class ClaimFolder {
 public:
  // The claims of the grid whose records are in `out_dir`; a claim without a heartbeat for `timeout_s`
  // seconds is stale.
  ClaimFolder(const std::string& out_dir, double timeout_s);
  ~ClaimFolder();
  ClaimFolder(const ClaimFolder&) = delete;
  ClaimFolder& operator=(const ClaimFolder&) = delete;

  const std::string& dir() const { return dir_; }
  double timeout() const { return timeout_s_; }
  double heartbeat_interval() const;  // timeout / 10, at least 0.1 s

  // Every cell the folder has claims of, by key (an empty map when the folder does not exist).
  std::map<std::string, ClaimInfo> scan() const;
  ClaimInfo read(const std::string& key) const;

  // Claims cell `key` (letters, digits, '.', '_', '-'): free, released or stale claims are taken;
  // nullptr when a live claim holds it. `on_lost` is called (once, from the heartbeat thread) if the
  // claim is later found taken over. Throws when the folder cannot be written.
  std::unique_ptr<Claim> try_claim(const std::string& key, std::function<void()> on_lost);

 private:
  friend class Claim;
  double now() const;  // the folder's clock, in seconds since the epoch
  // Creates KEY.gen holding `content`; false when that number exists.
  bool create(const std::string& key, int64_t gen, const std::string& content) const;
  std::string path(const std::string& key, int64_t gen) const;

  std::string dir_, clock_file_;
  double timeout_s_;
};

// A held claim. Its heartbeat runs in a thread of its own until release(), which the destructor calls.
class Claim {
 public:
  ~Claim();
  Claim(const Claim&) = delete;
  Claim& operator=(const Claim&) = delete;
  // Whether this claim is still the cell's latest state (not taken over).
  bool held() const;
  // Marks the cell released (unless it was taken over) and stops the heartbeat.
  void release();
  const std::string& key() const { return key_; }

 private:
  friend class ClaimFolder;
  Claim(const ClaimFolder& folder, std::string key, int64_t gen, std::function<void()> on_lost);
  void heartbeat();

  const ClaimFolder& folder_;
  std::string key_;
  int64_t gen_;
  std::function<void()> on_lost_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false, released_ = false;
  std::thread thread_;
};

}  // namespace lra
