#include "trainer/cli/fid_command.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/dataset_spec.h"
#include "data/npz.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/config/builders.h"
#include "trainer/config/config.h"
#include "trainer/fid/fid_stats_file.h"
#include "trainer/fid/frechet_distance.h"
#include "trainer/fid/image_source.h"
#include "trainer/fid/inception.h"
#include "trainer/fid/statistics_pass.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

// One of A and B: statistics read from a file, or images whose statistics the pass computes.
struct FidInput {
  std::string label;  // "A", "B"
  std::optional<FidStatistics> statistics;
  std::unique_ptr<ImageSource> images;
};

FidInput open_input(const std::string& path, const std::string& label) {
  FidInput input;
  input.label = label;
  std::error_code error;
  if (fs::is_directory(path, error)) {
    input.images = folder_image_source(path);
    return input;
  }
  if (!fs::exists(path, error)) throw std::runtime_error(label + ": " + path + ": no such file or directory");
  // An .npz either way: its directory tells statistics (mu, sigma) from images (arr_0), and an archive of both is
  // refused rather than guessed at.
  auto file = std::make_shared<const NpzFile>(path);
  const bool statistics = holds_fid_statistics(file->names());
  if (statistics && file->contains("arr_0")) {
    throw std::runtime_error(label + ": " + path + " holds both images (arr_0) and statistics (mu, sigma): " +
                             "which of them is meant is ambiguous; keep one of them in the file");
  }
  if (statistics) {
    std::map<std::string, NpyArray> arrays;
    for (const std::string& name : file->names()) arrays.emplace(name, file->read(name));
    input.statistics = fid_statistics_from_npz(arrays, path);
  } else {
    input.images = npz_image_source(std::move(file));
  }
  return input;
}

FidInput open_dataset_input(const FidArgs& args, const std::string& label) {
  const Config config = load_config(args.config, args.overrides);
  const DataSplit split = args.split == "test" ? DataSplit::kTest : DataSplit::kTrain;
  FidInput input;
  input.label = label;
  input.images = dataset_image_source(load_dataset(dataset_spec(config, split)));
  return input;
}

torch::Device fid_device(const std::string& choice, int local_rank) {
  if (choice == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (choice == "cuda" && !cuda) throw std::runtime_error("--device cuda: no CUDA device is available");
  if (!cuda) return torch::kCPU;
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % static_cast<int>(torch::cuda::device_count()))};
}

// Fails before the pass when a result could not be written.
void check_writable(const std::string& option, const std::string& output) {
  const fs::path parent = fs::absolute(output).parent_path();
  if (!fs::is_directory(parent)) throw std::runtime_error(option + " " + output + ": no directory " + parent.string());
  if (::access(parent.c_str(), W_OK) != 0) throw std::runtime_error(option + " " + output + ": " + parent.string() + " is not writable");
  if (fs::is_directory(output)) throw std::runtime_error(option + " " + output + ": it is a directory");
}

std::string images_text(const FidStatistics& stats) {
  return stats.count >= 0 ? std::to_string(stats.count) + " images" : "image count not stored";
}

nlohmann::json side_json(const FidStatistics& stats) {
  nlohmann::json side;
  side["source"] = stats.source;
  side["images"] = stats.count >= 0 ? nlohmann::json(stats.count) : nlohmann::json(nullptr);
  side["dimension"] = stats.mu.size(0);
  return side;
}

}  // namespace

CLI::App* add_fid_command(CLI::App& app, FidArgs& args) {
  CLI::App* fid = app.add_subcommand(
      "fid", "Inception statistics of images (--output stats.npz), or the FID between two sets (statistics or images)");
  fid->add_option("inputs", args.inputs,
                  "Statistics .npz (mu, sigma), samples .npz (arr_0 uint8 NxHxWxC) or image folder; one to save its "
                  "statistics, two for their FID")
      ->type_name("SOURCE");
  fid->add_option("--inception", args.inception,
                  "TorchScript feature network (launch/fid/export_inception.py): needed for image sources");
  fid->add_option("--output", args.output, "Save the statistics of the (one) image source here, as .npz");
  fid->add_option("--json", args.json, "Also write the FID as JSON here");
  CLI::Option* config = fid->add_option("--config", args.config, "A run config: its data set is the first source")
                            ->check(CLI::ExistingFile);
  fid->add_option("--set", args.overrides, "Override a config key: section.key=value (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->needs(config);
  fid->add_option("--split", args.split, "The config's split: train (default) or test")
      ->check(CLI::IsMember({"train", "test"}))
      ->needs(config);
  fid->add_option("--device", args.device, "auto (CUDA when available), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  fid->add_option("--batch-size", args.batch_size, "Images per network call on each rank")->check(CLI::PositiveNumber);
  fid->add_option("--num-images", args.num_images, "Use the first N images of each image source (0: all)")
      ->check(CLI::NonNegativeNumber);
  fid->add_option("--progress", args.progress, "auto (bar on a terminal), bar, or plain lines")
      ->check(CLI::IsMember({"auto", "bar", "plain"}));
  return fid;
}

int run_fid(const FidArgs& args, const MpiContext& mpi) {
  const size_t sources = args.inputs.size() + (args.config.empty() ? 0 : 1);
  if (sources == 0 || sources > 2) {
    throw std::runtime_error("ddpm fid takes one source (its statistics saved with --output) or two (their FID), got " +
                             std::to_string(sources));
  }
  if (sources == 1 && args.output.empty()) {
    throw std::runtime_error("one source: --output PATH is needed for its statistics (two sources give their FID)");
  }
  if (mpi.rank() == 0) {
    if (!args.output.empty()) check_writable("--output", args.output);
    if (!args.json.empty()) check_writable("--json", args.json);
  }

  std::vector<FidInput> inputs;
  const char* labels[] = {"A", "B"};
  if (!args.config.empty()) inputs.push_back(open_dataset_input(args, labels[0]));
  for (const std::string& path : args.inputs) inputs.push_back(open_input(path, labels[inputs.size()]));

  int image_sources = 0;
  for (const FidInput& input : inputs) image_sources += input.images ? 1 : 0;
  if (image_sources > 0 && args.inception.empty()) {
    for (const FidInput& input : inputs) {
      if (input.images) {
        throw std::runtime_error(input.label + ": " + input.images->name() +
                                 " holds images: --inception PATH (launch/fid/export_inception.py) is needed to compute "
                                 "their statistics");
      }
    }
  }
  if (!args.output.empty() && image_sources == 0) {
    throw std::runtime_error(inputs.size() == 1 ? inputs[0].label + ": " + args.inputs[0] +
                                                      " is a statistics file already: there is nothing to compute"
                                                : std::string("--output: both sources are statistics files: there "
                                                              "is nothing to save"));
  }
  if (!args.output.empty() && image_sources == 2) {
    throw std::runtime_error("--output: both sources are images; save their statistics one at a time (one source "
                             "with --output each)");
  }

  std::optional<InceptionNetwork> network;
  if (image_sources > 0) {
    const torch::Device device = fid_device(args.device, mpi.local_rank());
    network.emplace(args.inception, device);
    if (mpi.rank() == 0) std::cout << "feature network " << args.inception << " on " << device.str() << std::endl;
  }
  StatisticsPassOptions pass;
  pass.batch_size = args.batch_size;
  pass.max_images = args.num_images;
  pass.progress = parse_progress_mode(args.progress);
  std::vector<FidStatistics> statistics;
  const FidStatistics* computed = nullptr;
  for (FidInput& input : inputs) {
    if (input.statistics) {
      statistics.push_back(*input.statistics);
      continue;
    }
    if (mpi.rank() == 0) {
      std::cout << input.label << ": the activation statistics of " << input.images->description() << " on "
                << mpi.world_size() << " rank(s), batch " << args.batch_size << std::endl;
    }
    statistics.push_back(compute_fid_statistics(*input.images, *network, mpi, pass));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].images) computed = &statistics[i];
  }

  // Rank 0 computes the distance and writes; every rank fails with it, so that no rank is left waiting.
  std::string error;
  if (mpi.rank() == 0) {
    try {
      if (statistics.size() == 2) {
        const double fid = frechet_distance(statistics[0], statistics[1]);
        if (!args.output.empty()) save_fid_statistics(args.output, *computed);
        if (!args.json.empty()) {
          nlohmann::json report;
          report["fid"] = fid;
          report["a"] = side_json(statistics[0]);
          report["b"] = side_json(statistics[1]);
          report["inception"] = args.inception.empty() ? nlohmann::json(nullptr) : nlohmann::json(args.inception);
          write_text_atomically(args.json, report.dump(2) + "\n");
        }
        std::printf("FID %.4f (A: %s, B: %s)\n", fid, images_text(statistics[0]).c_str(),
                    images_text(statistics[1]).c_str());
      } else {
        save_fid_statistics(args.output, *computed);
        std::printf("statistics of %s (D = %lld)\n", images_text(*computed).c_str(),
                    static_cast<long long>(computed->mu.size(0)));
      }
      if (!args.output.empty()) std::printf("wrote %s\n", args.output.c_str());
      if (!args.json.empty()) std::printf("wrote %s\n", args.json.c_str());
      std::fflush(stdout);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  mpi.throw_if_any_failed(error, "rank 0 failed to compute or write the FID");
  return 0;
}

}  // namespace ddpm
