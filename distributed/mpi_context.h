// RAII ownership of MPI for one process: init with thread support, rank/world, and the node-local rank
// (from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), so it is right under mpirun, srun or any launcher).
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

namespace ddpm {

class MpiContext {
 public:
  MpiContext(int* argc, char*** argv);
  ~MpiContext();
  MpiContext(const MpiContext&) = delete;
  MpiContext& operator=(const MpiContext&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // The process ids of the ranks on this host (local rank order), for ending them when the launcher cannot.
  const std::vector<int>& local_pids() const { return local_pids_; }
  int thread_level() const { return thread_level_; }  // what MPI_Init_thread provided
  MPI_Comm comm() const { return MPI_COMM_WORLD; }
  std::string hostname() const;
  // The host name of any rank (gathered at start-up), and "rank R on HOST" for messages.
  const std::string& host(int rank) const;
  std::string where(int rank) const;
  std::string where() const { return where(rank_); }
  // Collectives on small host data (checkpoint bookkeeping, agreement on errors); not for tensors.
  // Every rank's bytes, gathered at root (others get an empty vector).
  std::vector<std::string> gather_to_root(const std::string& bytes, int root = 0) const;
  // root's string on every rank.
  std::string broadcast_string(const std::string& text, int root = 0) const;
  // True on every rank when `ok` is true on every rank.
  bool all_ok(bool ok) const;
  // The cross-rank error idiom, collective: returns when `error` is empty on every rank; otherwise throws
  // std::runtime_error on every rank, with `error` where it is set and `elsewhere` ("another rank failed to ...")
  // on the ranks that succeeded, so that all ranks fail together and each says why.
  void throw_if_any_failed(const std::string& error, const std::string& elsewhere) const;

 private:
  bool owns_init_ = false;
  int thread_level_ = MPI_THREAD_SINGLE;
  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::vector<std::string> hosts_;
  std::vector<int> local_pids_;
};

// Throws std::runtime_error with MPI's own text when code is not MPI_SUCCESS.
void check_mpi(int code, const char* what);

}  // namespace ddpm
