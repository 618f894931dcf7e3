#include "trainer/fid/statistics_pass.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/stop_signal.h"
#include "trainer/fid/activation_statistics.h"

namespace ddpm {

FidStatistics compute_fid_statistics(const ImageSource& source, InceptionNetwork& network, const MpiContext& mpi,
                                     const StatisticsPassOptions& options) {
  if (options.batch_size < 1) throw std::invalid_argument("the batch size must be at least 1");
  const int64_t total = options.max_images > 0 ? std::min(options.max_images, source.size()) : source.size();
  if (total < 2) {
    throw std::runtime_error(source.name() + ": " + std::to_string(total) +
                             " image(s): FID statistics need at least 2 (a covariance)");
  }
  const int64_t rank = mpi.rank(), world = mpi.world_size();
  const int64_t mine = total > rank ? (total - rank + world - 1) / world : 0;  // images rank, rank + W, ... < total
  const std::string what = "the Inception statistics of " + source.name();

  // Rank 0 counts its own shard and scales it by W: the ranks run at the same pace, and asking them would cost a
  // collective per batch.
  std::unique_ptr<TaskProgress> progress;
  if (rank == 0) progress = std::make_unique<TaskProgress>(options.progress, "fid", static_cast<double>(total), "images");
  if (progress) progress->update(0.0);

  ActivationStatistics statistics;
  bool stopped = false;
  try {
    std::vector<int64_t> indices;
    for (int64_t start = 0; start < mine; start += options.batch_size) {
      StopSignal::throw_if_requested(what);
      indices.clear();
      for (int64_t k = start; k < std::min(mine, start + options.batch_size); ++k) indices.push_back(rank + k * world);
      statistics.add(network.activations(source.read(indices)));
      if (progress) {
        progress->update(std::min(static_cast<double>(start + static_cast<int64_t>(indices.size())) * world,
                                  static_cast<double>(total)));
      }
    }
  } catch (const StopRequested&) {
    stopped = true;  // and still joins the agreement below, so that every rank leaves together
  }
  if (!mpi.all_ok(!stopped)) throw StopRequested(what);
  if (progress) {
    progress->update(static_cast<double>(total));
    progress->finish();
  }
  statistics.reduce(mpi);
  return statistics.statistics(source.description());
}

}  // namespace ddpm
