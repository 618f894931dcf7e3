// Images/s of the loader alone (collate + flip + conversion + prefetch), for CIFAR-sized synthetic batches and the
// real Fashion-MNIST. Usage: bench_loader [fashion-mnist folder] [batches per run]
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "data/data_loader.h"
#include "data/dataset_spec.h"

namespace {

double images_per_second(const std::shared_ptr<const ddpm::ImageDataset>& dataset, int64_t threads, int64_t batches) {
  ddpm::LoaderOptions options;
  options.batch_size = 128;
  options.random_flip = true;
  options.threads = threads;
  options.prefetch_batches = 4;
  options.seed = 1;
  ddpm::DataLoader loader(dataset, options);
  for (int i = 0; i < 5; ++i) loader.next();  // warm up: threads started, pages touched
  double checksum = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < batches; ++i) {
    const ddpm::Batch batch = loader.next();
    checksum += batch.images.data_ptr<float>()[0];  // keep the batch observably used
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "%s", checksum == 12345.678 ? " " : "");
  return static_cast<double>(batches * options.batch_size) / seconds;
}

void report(const char* name, const std::shared_ptr<const ddpm::ImageDataset>& dataset, int64_t batches) {
  for (int64_t threads : {1, 2}) {
    std::printf("%-34s batch 128, flip on, %lld thread(s): %9.0f images/s\n", name, static_cast<long long>(threads),
                images_per_second(dataset, threads, batches));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string fashion = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int64_t batches = argc > 2 ? std::stoll(argv[2]) : 400;

  auto synthetic = std::make_shared<ddpm::ImageDataset>();
  synthetic->images = torch::randint(0, 256, {50000, 3, 32, 32}, torch::kUInt8);
  synthetic->labels = torch::randint(0, 10, {50000}, torch::kInt64);
  synthetic->source = "synthetic";
  report("synthetic 50000 x 3x32x32", synthetic, batches);

  const auto load_start = std::chrono::steady_clock::now();
  auto real = std::make_shared<ddpm::ImageDataset>(ddpm::load_dataset({"idx", fashion, "train", 28, 1}));
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  std::printf("Fashion-MNIST train: %lld images loaded (gunzip + parse) in %.2f s\n",
              static_cast<long long>(real->size()), load_seconds);
  report("Fashion-MNIST 60000 x 1x28x28", real, batches);
  return 0;
}
