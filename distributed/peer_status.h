// Which rank holds a collective up. MPI and NCCL only tell a waiting rank that nothing arrives, not who is
// missing. When a rank's watchdog fires it asks every other rank what it is doing, over a communicator of its
// own; every rank answers from its watchdog thread, so a rank blocked inside a collective answers too, while a
// stopped, frozen or dead one cannot, and a rank stuck outside the collectives says so. The answers name the
// culprit in the error message instead of leaving the user to guess among N ranks.
#pragma once
#include <mpi.h>

#include <list>
#include <optional>
#include <string>
#include <vector>

#include "distributed/mpi_context.h"

namespace ddpm {

class PeerStatus {
 public:
  // Collective over the world: duplicates its communicator. Inactive (asks and answers nothing) with one rank,
  // or when MPI does not provide MPI_THREAD_MULTIPLE (questions are answered from a second thread).
  explicit PeerStatus(const MpiContext& mpi);
  ~PeerStatus();
  PeerStatus(const PeerStatus&) = delete;
  PeerStatus& operator=(const PeerStatus&) = delete;

  bool active() const { return comm_ != MPI_COMM_NULL; }
  // Answers the questions that have arrived with `doing` ("waiting in the gradient all-reduce of step 12
  // for 3.1 s", "working outside any collective ..."). Never blocks. Call it often from one thread.
  void answer_questions(const std::string& doing);
  // Asks every other rank what it is doing and waits up to `grace_seconds` for the answers (answering the
  // questions of other ranks meanwhile, with `doing`). Returns a sentence naming the ranks that did not answer
  // and those not waiting in `waiting_in`, or an empty string when inactive. Call from the answering thread.
  std::string diagnose(const std::string& waiting_in, const std::string& doing, double grace_seconds);
  // True when every other rank answers within `grace_seconds` (answering others meanwhile with `doing`), or when
  // inactive. Call from the answering thread.
  bool all_answer(const std::string& doing, double grace_seconds);
  // The answer of a rank blocked in `what` for `seconds`; diagnose() recognizes it.
  static std::string waiting(const std::string& what, double seconds);

 private:
  struct Outgoing {
    MPI_Request request;
    std::string text;
  };
  void send(int peer, int tag, std::string text);
  // Every other rank's answer (nullopt: none within the grace).
  std::vector<std::optional<std::string>> ask_all(const std::string& doing, double grace_seconds);

  const MpiContext& mpi_;
  int rank_ = 0;
  int world_size_ = 1;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::list<Outgoing> outgoing_;  // a list: MPI reads each buffer until its send completes, so none may move
};

}  // namespace ddpm
