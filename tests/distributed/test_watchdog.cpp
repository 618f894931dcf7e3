// The watchdog and the peer status, under `mpirun -np N` (N = 1, 2) or run directly (a singleton MPI process):
// a scope that outlives its timeout fires the handler once, with its description and its timeout (times the
// allowance); a scope that ends in time never fires; every scope gets a deadline of its own; the tick callback is
// polled with what the rank is doing. With one rank the peer status is inactive; with more, a rank whose
// watchdog fires learns from the others' ticks who is waiting with it and who holds the job up.
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "distributed/mpi_context.h"
#include "distributed/peer_status.h"
#include "distributed/watchdog.h"
#include "tests/mpi_main.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void sleep_seconds(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// Records the watchdog's timeout calls (which, unlike the trainer's handler, return).
class Timeouts {
 public:
  std::function<void(const std::string&, double)> handler() {
    return [this](const std::string& what, double seconds) {
      const std::lock_guard<std::mutex> lock(mutex_);
      calls_.push_back({what, seconds});
      at_.push_back(Clock::now());
      cv_.notify_all();
    };
  }
  // Waits up to `limit` seconds for `n` calls; true when they came.
  bool wait_for(size_t n, double limit) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::duration<double>(limit), [&] { return calls_.size() >= n; });
  }
  std::vector<std::pair<std::string, double>> calls() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  std::vector<Clock::time_point> at() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return at_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, double>> calls_;
  std::vector<Clock::time_point> at_;
};

// A scope with a long allowance (a checkpoint: 10x) asks whether the peers are alive once per timeout: while they
// answer it waits on; the first time one does not (a host cut off) it fires then, not at the end of the allowance.
TEST(Watchdog, LongAllowanceLastsOnlyWhilePeersAnswer) {
  Timeouts timeouts;
  std::mutex mutex;
  std::vector<std::string> asked;
  bool alive = true;
  ddpm::Watchdog watchdog(
      0.2, timeouts.handler(), [](const std::string&) {},
      [&](const std::string& doing) {
        const std::lock_guard<std::mutex> lock(mutex);
        asked.push_back(doing);
        return alive;
      });
  const Clock::time_point start = Clock::now();
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the checkpoint of step 6", 10.0);
    sleep_seconds(0.7);  // three probes answered: no timeout
    EXPECT_TRUE(timeouts.calls().empty());
    {
      const std::lock_guard<std::mutex> lock(mutex);
      EXPECT_GE(asked.size(), 2u);
      EXPECT_LE(asked.size(), 4u);
      alive = false;
    }
    ASSERT_TRUE(timeouts.wait_for(1, 1.0)) << "a silent peer did not end the wait";
  }
  const double fired_after = std::chrono::duration<double>(timeouts.at().at(0) - start).count();
  EXPECT_LT(fired_after, 1.3) << "waited on past a silent peer";
  const auto calls = timeouts.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].first, "the checkpoint of step 6");
  EXPECT_GE(calls[0].second, 0.7);  // how long it had waited, not the allowance
  EXPECT_LT(calls[0].second, 1.3);
  const std::lock_guard<std::mutex> lock(mutex);
  EXPECT_NE(asked.at(0).find("waiting in the checkpoint of step 6 for"), std::string::npos) << asked.at(0);
}

// A scope of the plain timeout never probes: it just times out.
TEST(Watchdog, PlainScopeDoesNotProbe) {
  Timeouts timeouts;
  std::atomic<int> probes{0};
  ddpm::Watchdog watchdog(
      0.1, timeouts.handler(), [](const std::string&) {}, [&](const std::string&) { return ++probes, true; });
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the loss average of step 3");
    ASSERT_TRUE(timeouts.wait_for(1, 3.0));
  }
  EXPECT_EQ(probes, 0);
}

TEST(Watchdog, ScopePastItsTimeoutFiresOnceWithItsDescriptionAndTimeout) {
  Timeouts timeouts;
  ddpm::Watchdog watchdog(0.1, timeouts.handler());
  EXPECT_EQ(watchdog.timeout_seconds(), 0.1);
  const Clock::time_point start = Clock::now();
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the gradient all-reduce of step 12");
    ASSERT_TRUE(timeouts.wait_for(1, 3.0)) << "no timeout within 3 s of a 0.1 s deadline";
    const double fired_after = std::chrono::duration<double>(timeouts.at().at(0) - start).count();
    EXPECT_GE(fired_after, 0.1) << "fired before the deadline";
    EXPECT_LT(fired_after, 1.5) << "fired long after the deadline";
    sleep_seconds(0.2);  // still inside the scope, past the deadline: no second call
  }
  const auto calls = timeouts.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].first, "the gradient all-reduce of step 12");
  EXPECT_EQ(calls[0].second, 0.1);
}

TEST(Watchdog, AllowanceScalesTheTimeout) {
  Timeouts timeouts;
  // Margins of several tenths of a second: ctest runs this next to training tests on two cores.
  ddpm::Watchdog watchdog(0.1, timeouts.handler());
  const Clock::time_point start = Clock::now();
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the checkpoint of step 4", 10.0);
    sleep_seconds(0.3);  // three times the plain timeout, under a third of the allowed one
    EXPECT_TRUE(timeouts.calls().empty()) << "fired at the timeout without its allowance";
    ASSERT_TRUE(timeouts.wait_for(1, 3.0));
  }
  EXPECT_GE(std::chrono::duration<double>(timeouts.at().at(0) - start).count(), 1.0);
  const auto calls = timeouts.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].first, "the checkpoint of step 4");
  EXPECT_EQ(calls[0].second, 0.1 * 10.0);
}

TEST(Watchdog, ScopeThatEndsInTimeNeverFires) {
  Timeouts timeouts;
  ddpm::Watchdog watchdog(1.0, timeouts.handler());
  { const ddpm::Watchdog::Scope armed(watchdog, "the step agreement of step 1"); }
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the step agreement of step 2");
    sleep_seconds(0.05);
  }
  EXPECT_FALSE(timeouts.wait_for(1, 1.5)) << "fired after the scope ended: " << timeouts.calls().at(0).first;
}

TEST(Watchdog, EverySequentialScopeHasADeadlineOfItsOwn) {
  Timeouts timeouts;
  ddpm::Watchdog watchdog(0.6, timeouts.handler());
  // Five scopes of 0.15 s each: 0.75 s in all, more than the timeout, but each ends well in time.
  for (int step = 1; step <= 5; ++step) {
    const ddpm::Watchdog::Scope armed(watchdog, "the loss average of step " + std::to_string(step));
    sleep_seconds(0.15);
  }
  sleep_seconds(0.15);
  EXPECT_TRUE(timeouts.calls().empty()) << timeouts.calls().at(0).first;
  // The next one overstays: it fires, with its own description and a full timeout after it began.
  const Clock::time_point start = Clock::now();
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the loss average of step 6");
    ASSERT_TRUE(timeouts.wait_for(1, 3.0));
  }
  EXPECT_GE(std::chrono::duration<double>(timeouts.at().at(0) - start).count(), 0.6);
  ASSERT_EQ(timeouts.calls().size(), 1u);
  EXPECT_EQ(timeouts.calls()[0].first, "the loss average of step 6");
  EXPECT_EQ(timeouts.calls()[0].second, 0.6);
  // Re-armed after a firing, it fires again.
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the loss average of step 7");
    ASSERT_TRUE(timeouts.wait_for(2, 3.0));
  }
  EXPECT_EQ(timeouts.calls().at(1).first, "the loss average of step 7");
}

TEST(Watchdog, InnerScopeArmsWithItsOwnDescriptionAndDeadline) {
  Timeouts timeouts;
  ddpm::Watchdog watchdog(0.1, timeouts.handler());
  {
    const ddpm::Watchdog::Scope outer(watchdog, "the checkpoint of step 8", 100.0);
    const ddpm::Watchdog::Scope inner(watchdog, "waiting for the device at step 8");
    ASSERT_TRUE(timeouts.wait_for(1, 3.0)) << "the inner scope's 0.1 s deadline did not replace the outer's 10 s";
  }
  ASSERT_EQ(timeouts.calls().size(), 1u);
  EXPECT_EQ(timeouts.calls()[0].first, "waiting for the device at step 8");
  EXPECT_EQ(timeouts.calls()[0].second, 0.1);
}

// The seconds in "... for 1.2 s ..." when `text` matches `pattern` (whose one group is the number); -1 otherwise.
double matched_seconds(const std::string& text, const std::string& pattern) {
  std::smatch match;
  if (!std::regex_match(text, match, std::regex(pattern))) return -1.0;
  return std::stod(match[1].str());
}

TEST(Watchdog, DoingSaysWhatTheRankWaitsInOrSinceWhenItWorksOutside) {
  Timeouts timeouts;
  ddpm::Watchdog watchdog(30.0, timeouts.handler());
  EXPECT_GE(matched_seconds(watchdog.doing(), R"(working outside any collective for (\d+\.\d) s \(none yet\))"), 0.0)
      << watchdog.doing();
  {
    const ddpm::Watchdog::Scope armed(watchdog, "the replica check of step 3");
    sleep_seconds(0.12);
    const std::string doing = watchdog.doing();
    // PeerStatus::waiting's sentence, which diagnose() recognizes as waiting in that collective.
    const double seconds = matched_seconds(doing, R"(waiting in the replica check of step 3 for (\d+\.\d) s)");
    EXPECT_GE(seconds, 0.1) << doing;
    EXPECT_LT(seconds, 5.0) << doing;
  }
  sleep_seconds(0.12);
  const std::string doing = watchdog.doing();
  const double seconds =
      matched_seconds(doing, R"(working outside any collective for (\d+\.\d) s since the replica check of step 3)");
  EXPECT_GE(seconds, 0.1) << doing;
  EXPECT_LT(seconds, 5.0) << doing;
  EXPECT_TRUE(timeouts.calls().empty());
}

// The tick callback (the trainer's PeerStatus::answer_questions) is polled every few hundred milliseconds, armed
// or not, with doing()'s sentence of that moment.
TEST(Watchdog, TickCallbackIsPolledWithWhatTheRankIsDoing) {
  const std::regex outside_none(R"(working outside any collective for \d+\.\d s \(none yet\))");
  const std::regex waiting(R"(waiting in the gradient all-reduce of step 5 for \d+\.\d s)");
  const std::regex outside_since(R"(working outside any collective for \d+\.\d s since the gradient all-reduce of step 5)");
  Timeouts timeouts;
  std::mutex mutex;
  std::vector<std::string> ticks;
  const auto snapshot = [&] {
    const std::lock_guard<std::mutex> lock(mutex);
    return ticks;
  };
  // Waits up to 3 s for `n` ticks matching `pattern`.
  const auto wait_for_ticks = [&](const std::regex& pattern, size_t n) {
    const Clock::time_point start = Clock::now();
    while (seconds_since(start) < 3.0) {
      const std::vector<std::string> seen = snapshot();
      size_t matching = 0;
      for (const std::string& tick : seen) matching += std::regex_match(tick, pattern) ? 1 : 0;
      if (matching >= n) return true;
      sleep_seconds(0.01);
    }
    return false;
  };
  {
    ddpm::Watchdog watchdog(30.0, timeouts.handler(), [&](const std::string& doing) {
      const std::lock_guard<std::mutex> lock(mutex);
      ticks.push_back(doing);
    });
    // Polled while nothing is armed: a second tick one period (~0.2 s) after the first.
    ASSERT_TRUE(wait_for_ticks(outside_none, 2)) << "fewer than 2 ticks in 3 s, unarmed";
    {
      const ddpm::Watchdog::Scope armed(watchdog, "the gradient all-reduce of step 5");
      ASSERT_TRUE(wait_for_ticks(waiting, 2)) << "fewer than 2 ticks in 3 s, armed";
    }
    ASSERT_TRUE(wait_for_ticks(outside_since, 1)) << "no tick in 3 s after the scope";
  }
  const size_t after_destruction = snapshot().size();
  sleep_seconds(0.25);  // more than a tick period
  EXPECT_EQ(snapshot().size(), after_destruction) << "ticks after the watchdog was destroyed";
  // In time order: (none yet)*, waiting*, since*, and nothing else.
  int phase = 0;
  for (const std::string& tick : snapshot()) {
    const int kind = std::regex_match(tick, outside_none) ? 0
                     : std::regex_match(tick, waiting)    ? 1
                     : std::regex_match(tick, outside_since) ? 2
                                                             : -1;
    ASSERT_NE(kind, -1) << "unexpected tick: " << tick;
    EXPECT_GE(kind, phase) << "out of order: " << tick;
    phase = kind;
  }
  EXPECT_TRUE(timeouts.calls().empty());
}

TEST(Watchdog, DestructionIsPromptArmedOrNot) {
  Timeouts timeouts;
  for (const bool ticking : {false, true}) {
    const Clock::time_point start = Clock::now();
    {
      std::function<void(const std::string&)> tick;
      if (ticking) tick = [](const std::string&) {};
      ddpm::Watchdog watchdog(30.0, timeouts.handler(), tick);
      { const ddpm::Watchdog::Scope armed(watchdog, "the bound evaluation of step 2"); }
    }
    EXPECT_LT(seconds_since(start), 1.0) << "ticking " << ticking;
  }
  EXPECT_TRUE(timeouts.calls().empty());
}

TEST(PeerStatus, WaitingSentence) {
  EXPECT_EQ(ddpm::PeerStatus::waiting("the gradient all-reduce of step 12", 3.14),
            "waiting in the gradient all-reduce of step 12 for 3.1 s");
  EXPECT_EQ(ddpm::PeerStatus::waiting("x", 0.0), "waiting in x for 0.0 s");
}

TEST(PeerStatus, InactiveWithOneRank) {
  if (ddpm_test::mpi().world_size() != 1) GTEST_SKIP() << "one rank only";
  ddpm::PeerStatus peers(ddpm_test::mpi());
  EXPECT_FALSE(peers.active());
  peers.answer_questions("working outside any collective for 1.0 s (none yet)");  // nothing to answer, no MPI
  const Clock::time_point start = Clock::now();
  EXPECT_EQ(peers.diagnose("the gradient all-reduce of step 3", "waiting in the gradient all-reduce of step 3 for 1.0 s", 2.0),
            "");
  EXPECT_LT(seconds_since(start), 0.5) << "an inactive peer status waited for answers";
}

// The other ranks keep answering from their watchdog threads (as in the trainer) until rank 0 is done.
void answer_until_rank0_is_done() {
  MPI_Request done = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &done);
  int finished = 0;
  while (!finished) {
    MPI_Test(&done, &finished, MPI_STATUS_IGNORE);
    sleep_seconds(0.01);
  }
}

// Rank 0's side of answer_until_rank0_is_done(): a nonblocking barrier too (MPI never matches a blocking
// collective with a nonblocking one).
void rank0_done() {
  MPI_Request done = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &done);
  MPI_Wait(&done, MPI_STATUS_IGNORE);
}

bool skip_multi_rank(const ddpm::PeerStatus& peers) {
  if (ddpm_test::mpi().world_size() < 2) return true;
  // Answers come from a second thread: without MPI_THREAD_MULTIPLE the peer status is off (on every rank).
  return !peers.active();
}

std::string ranks_phrase(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    out += (i > 0 ? ", " : "") + std::to_string(ranks[i]) + " (" + ddpm_test::mpi().host(ranks[i]) + ")";
  }
  return out + (ranks.size() == 1 ? " is" : " are");
}

// Rank 0's watchdog fires in "the gradient all-reduce of step 5" and its handler asks the others, as the trainer's
// does; the others wait in the same collective (armed, answering from their ticks): nobody holds the job up.
TEST(PeerStatus, FiringRankLearnsThatEveryoneWaitsInTheSameCollective) {
  ddpm::PeerStatus peers(ddpm_test::mpi());
  if (skip_multi_rank(peers)) GTEST_SKIP() << "needs 2+ ranks and MPI_THREAD_MULTIPLE";
  const std::string what = "the gradient all-reduce of step 5";
  if (ddpm_test::mpi().rank() == 0) {
    std::mutex mutex;
    std::condition_variable cv;
    std::string diagnosis;
    bool fired = false;
    ddpm::Watchdog watchdog(
        0.2,
        [&](const std::string& what_fired, double seconds) {
          std::string text = peers.diagnose(what_fired, ddpm::PeerStatus::waiting(what_fired, seconds), 3.0);
          const std::lock_guard<std::mutex> lock(mutex);
          diagnosis = std::move(text);
          fired = true;
          cv.notify_all();
        },
        [&](const std::string& doing) { peers.answer_questions(doing); });
    MPI_Barrier(MPI_COMM_WORLD);  // every other rank is armed
    {
      const ddpm::Watchdog::Scope armed(watchdog, what);
      std::unique_lock<std::mutex> lock(mutex);
      // No ASSERT here: rank 0 must reach rank0_done() or the other ranks wait forever.
      EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return fired; })) << "the watchdog did not fire";
    }
    rank0_done();
    std::vector<int> all;
    for (int r = 0; r < ddpm_test::mpi().world_size(); ++r) all.push_back(r);
    EXPECT_EQ(diagnosis, "no rank is stuck outside a collective: they wait in collectives that do not match, or on a slow "
                         "device; " + ranks_phrase(all) + " waiting in " + what);
  } else {
    ddpm::Watchdog watchdog(
        30.0, [](const std::string& w, double) { ADD_FAILURE() << "fired: " << w; },
        [&](const std::string& doing) { peers.answer_questions(doing); });
    const ddpm::Watchdog::Scope armed(watchdog, what);
    MPI_Barrier(MPI_COMM_WORLD);
    answer_until_rank0_is_done();
  }
}

// The others work outside any collective since their last one (alive, answering, not in the all-reduce): each is
// named as holding up the job, with its answer.
TEST(PeerStatus, FiringRankNamesTheRanksWorkingOutside) {
  ddpm::PeerStatus peers(ddpm_test::mpi());
  if (skip_multi_rank(peers)) GTEST_SKIP() << "needs 2+ ranks and MPI_THREAD_MULTIPLE";
  if (ddpm_test::mpi().rank() == 0) {
    MPI_Barrier(MPI_COMM_WORLD);
    const std::string diagnosis =
        peers.diagnose("the gradient all-reduce of step 5", "waiting in the gradient all-reduce of step 5 for 0.2 s", 3.0);
    rank0_done();
    std::string pattern;
    for (int r = 1; r < ddpm_test::mpi().world_size(); ++r) {
      pattern += ddpm_test::mpi().where(r) +
                 R"( is holding up the job: working outside any collective for \d+\.\d s since the checkpoint of step 4; )";
    }
    pattern += "rank 0 \\(" + ddpm_test::mpi().host(0) + "\\) is waiting in the gradient all-reduce of step 5";
    EXPECT_TRUE(std::regex_match(diagnosis, std::regex(pattern))) << diagnosis;
  } else {
    ddpm::Watchdog watchdog(
        30.0, [](const std::string& w, double) { ADD_FAILURE() << "fired: " << w; },
        [&](const std::string& doing) { peers.answer_questions(doing); });
    { const ddpm::Watchdog::Scope armed(watchdog, "the checkpoint of step 4"); }
    MPI_Barrier(MPI_COMM_WORLD);
    answer_until_rank0_is_done();
  }
}

// A rank that answers nothing within the grace (stopped, frozen, dead: here, no tick answers) is named as such.
TEST(PeerStatus, FiringRankNamesTheRanksThatDoNotAnswer) {
  ddpm::PeerStatus peers(ddpm_test::mpi());
  if (skip_multi_rank(peers)) GTEST_SKIP() << "needs 2+ ranks and MPI_THREAD_MULTIPLE";
  MPI_Barrier(MPI_COMM_WORLD);
  if (ddpm_test::mpi().rank() == 0) {
    const Clock::time_point start = Clock::now();
    const std::string diagnosis =
        peers.diagnose("the step agreement of step 9", "waiting in the step agreement of step 9 for 0.2 s", 0.3);
    const double waited = seconds_since(start);
    rank0_done();
    std::string expected;
    for (int r = 1; r < ddpm_test::mpi().world_size(); ++r) {
      expected += ddpm_test::mpi().where(r) +
                  " is holding up the job: it did not answer within 0.3 s (stopped, frozen, dead or unreachable); ";
    }
    expected += "rank 0 (" + ddpm_test::mpi().host(0) + ") is waiting in the step agreement of step 9";
    EXPECT_EQ(diagnosis, expected);
    EXPECT_GE(waited, 0.3);
    EXPECT_LT(waited, 2.0);
  } else {
    rank0_done();
  }
}

}  // namespace
