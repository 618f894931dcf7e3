#include "distributed/mpi_context.h"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace ddpm {

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(text, static_cast<size_t>(length)));
}

MpiContext::MpiContext(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Gradient buckets are reduced from autograd threads, so ask for full thread support.
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_), "MPI_Init_thread");
    owns_init_ = true;
  } else {
    MPI_Query_thread(&thread_level_);
  }
  // Errors come back as codes that check_mpi turns into exceptions with context, instead of aborting.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  MPI_Comm node_comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_comm),
            "MPI_Comm_split_type");
  MPI_Comm_rank(node_comm, &local_rank_);
  MPI_Comm_size(node_comm, &local_size_);
  const int pid = static_cast<int>(::getpid());
  local_pids_.resize(static_cast<size_t>(local_size_));
  check_mpi(MPI_Allgather(&pid, 1, MPI_INT, local_pids_.data(), 1, MPI_INT, node_comm), "MPI_Allgather of the local pids");
  MPI_Comm_free(&node_comm);
  // Every rank's host name, once: errors about another rank name its host without asking it (it may be unreachable).
  std::vector<char> names(static_cast<size_t>(world_size_) * MPI_MAX_PROCESSOR_NAME, '\0');
  const std::string mine = hostname().substr(0, MPI_MAX_PROCESSOR_NAME - 1);
  std::vector<char> padded(MPI_MAX_PROCESSOR_NAME, '\0');
  std::copy(mine.begin(), mine.end(), padded.begin());
  check_mpi(MPI_Allgather(padded.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                          MPI_COMM_WORLD),
            "MPI_Allgather of the host names");
  for (int r = 0; r < world_size_; ++r) hosts_.emplace_back(names.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME);
}

const std::string& MpiContext::host(int rank) const { return hosts_.at(static_cast<size_t>(rank)); }

std::string MpiContext::where(int rank) const { return "rank " + std::to_string(rank) + " on " + host(rank); }

MpiContext::~MpiContext() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_init_ && !finalized) MPI_Finalize();
}

std::string MpiContext::hostname() const {
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  MPI_Get_processor_name(name, &length);
  return std::string(name, static_cast<size_t>(length));
}

}  // namespace ddpm

namespace ddpm {

std::vector<std::string> MpiContext::gather_to_root(const std::string& bytes, int root) const {
  int length = static_cast<int>(bytes.size());
  std::vector<int> lengths(static_cast<size_t>(world_size_));
  check_mpi(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, comm()), "MPI_Gather of lengths");
  std::vector<int> offsets(static_cast<size_t>(world_size_), 0);
  int total = 0;
  for (int r = 0; r < world_size_; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(rank_ == root ? static_cast<size_t>(total) : 0, '\0');
  check_mpi(MPI_Gatherv(bytes.data(), length, MPI_BYTE, all.data(), lengths.data(), offsets.data(), MPI_BYTE, root,
                        comm()),
            "MPI_Gatherv");
  std::vector<std::string> parts;
  if (rank_ != root) return parts;
  for (int r = 0; r < world_size_; ++r) {
    parts.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                               static_cast<size_t>(lengths[static_cast<size_t>(r)])));
  }
  return parts;
}

std::string MpiContext::broadcast_string(const std::string& text, int root) const {
  int length = static_cast<int>(text.size());
  check_mpi(MPI_Bcast(&length, 1, MPI_INT, root, comm()), "MPI_Bcast of a length");
  std::string result = rank_ == root ? text : std::string(static_cast<size_t>(length), '\0');
  check_mpi(MPI_Bcast(result.data(), length, MPI_BYTE, root, comm()), "MPI_Bcast");
  return result;
}

bool MpiContext::all_ok(bool ok) const {
  int local = ok ? 1 : 0;
  int global = 0;
  check_mpi(MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MIN, comm()), "MPI_Allreduce of a flag");
  return global == 1;
}

void MpiContext::throw_if_any_failed(const std::string& error, const std::string& elsewhere) const {
  if (!all_ok(error.empty())) throw std::runtime_error(error.empty() ? elsewhere : error);
}

}  // namespace ddpm
