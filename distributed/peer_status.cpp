#include "distributed/peer_status.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace ddpm {
namespace {

constexpr int kQuestionTag = 1;
constexpr int kAnswerTag = 2;
constexpr int kMaxAnswer = 1024;
constexpr const char* kWaitingPrefix = "waiting in ";

std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", seconds);
  return text;
}

std::string rank_list(const std::vector<int>& ranks, const MpiContext& mpi) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    out += (i > 0 ? ", " : "") + std::to_string(ranks[i]) + " (" + mpi.host(ranks[i]) + ")";
  }
  return out;
}

}  // namespace

PeerStatus::PeerStatus(const MpiContext& mpi) : mpi_(mpi), rank_(mpi.rank()), world_size_(mpi.world_size()) {
  // Every rank takes the same branch (the thread level is the library's), so the dup stays collective.
  if (world_size_ > 1 && mpi.thread_level() >= MPI_THREAD_MULTIPLE) {
    check_mpi(MPI_Comm_dup(mpi.comm(), &comm_), "MPI_Comm_dup for the peer status");
  }
}

PeerStatus::~PeerStatus() {
  for (Outgoing& out : outgoing_) MPI_Request_free(&out.request);  // small messages: MPI finishes them itself
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void PeerStatus::send(int peer, int tag, std::string text) {
  outgoing_.remove_if([](Outgoing& out) {
    int done = 0;
    MPI_Test(&out.request, &done, MPI_STATUS_IGNORE);
    return done != 0;
  });
  outgoing_.push_back({MPI_REQUEST_NULL, std::move(text)});
  Outgoing& out = outgoing_.back();
  MPI_Isend(out.text.data(), static_cast<int>(out.text.size()), MPI_CHAR, peer, tag, comm_, &out.request);
}

void PeerStatus::answer_questions(const std::string& doing) {
  if (!active()) return;
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kQuestionTag, comm_, &arrived, &status);
    if (!arrived) return;
    char question = 0;
    MPI_Recv(&question, 1, MPI_CHAR, status.MPI_SOURCE, kQuestionTag, comm_, MPI_STATUS_IGNORE);
    send(status.MPI_SOURCE, kAnswerTag, doing.substr(0, kMaxAnswer));
  }
}

std::vector<std::optional<std::string>> PeerStatus::ask_all(const std::string& doing, double grace_seconds) {
  std::vector<std::vector<char>> answers(static_cast<size_t>(world_size_), std::vector<char>(kMaxAnswer));
  std::vector<MPI_Request> receives(static_cast<size_t>(world_size_), MPI_REQUEST_NULL);
  std::vector<int> lengths(static_cast<size_t>(world_size_), -1);
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    MPI_Irecv(answers[peer].data(), kMaxAnswer, MPI_CHAR, peer, kAnswerTag, comm_, &receives[peer]);
    send(peer, kQuestionTag, std::string(1, '?'));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_seconds);
  int missing = world_size_ - 1;
  while (missing > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int peer = 0; peer < world_size_; ++peer) {
      if (receives[peer] == MPI_REQUEST_NULL) continue;
      int done = 0;
      MPI_Status status;
      MPI_Test(&receives[peer], &done, &status);
      if (done) {
        MPI_Get_count(&status, MPI_CHAR, &lengths[peer]);
        --missing;
      }
    }
    answer_questions(doing);  // another waiting rank may be asking this one at the same moment
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::optional<std::string>> out(static_cast<size_t>(world_size_));
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    if (lengths[peer] < 0) {
      MPI_Cancel(&receives[peer]);
      MPI_Request_free(&receives[peer]);
      continue;
    }
    out[peer] = std::string(answers[peer].data(), static_cast<size_t>(lengths[peer]));
  }
  return out;
}

bool PeerStatus::all_answer(const std::string& doing, double grace_seconds) {
  if (!active()) return true;
  const std::vector<std::optional<std::string>> answers = ask_all(doing, grace_seconds);
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer != rank_ && !answers[peer]) return false;
  }
  return true;
}

std::string PeerStatus::diagnose(const std::string& waiting_in, const std::string& doing, double grace_seconds) {
  if (!active()) return "";
  const std::vector<std::optional<std::string>> answers = ask_all(doing, grace_seconds);
  std::vector<std::string> holding_up;
  std::vector<int> waiting = {rank_};
  std::string waiting_elsewhere;
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    if (!answers[peer]) {
      holding_up.push_back(mpi_.where(peer) + " is holding up the job: it did not answer within " +
                           format_seconds(grace_seconds) + " (stopped, frozen, dead or unreachable)");
      continue;
    }
    const std::string& answer = *answers[peer];
    if (answer.rfind(kWaitingPrefix, 0) != 0) {
      holding_up.push_back(mpi_.where(peer) + " is holding up the job: " + answer);
    } else if (answer.rfind(kWaitingPrefix + waiting_in + " for ", 0) == 0) {
      waiting.push_back(peer);
    } else {
      waiting_elsewhere += "; " + mpi_.where(peer) + " is " + answer;
    }
  }
  std::sort(waiting.begin(), waiting.end());
  std::string out;
  for (const std::string& part : holding_up) out += (out.empty() ? "" : "; ") + part;
  if (out.empty()) out = "no rank is stuck outside a collective: they wait in collectives that do not match, or on a slow device";
  return out + "; " + rank_list(waiting, mpi_) + (waiting.size() == 1 ? " is" : " are") + " waiting in " + waiting_in +
         waiting_elsewhere;
}

std::string PeerStatus::waiting(const std::string& what, double seconds) {
  return kWaitingPrefix + what + " for " + format_seconds(seconds);
}

}  // namespace ddpm
