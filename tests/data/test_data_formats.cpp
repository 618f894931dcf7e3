// The three formats on small files written here in their exact layouts, every bad-input error, and the real
// Fashion-MNIST.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "data/data_error.h"
#include "data/dataset_spec.h"
#include "data/image_folder.h"
#include "data/pixels.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("ddpm_data_" + std::string(info->test_suite_name()) + "_" + info->name() +
                                         "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const Bytes& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Bytes gzip_bytes(const Bytes& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&z, raw.size()) + 64);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void put_be32(Bytes& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
}

uint8_t idx_pixel(int64_t image, int64_t y, int64_t x) {
  return static_cast<uint8_t>((image * 7 + y * 3 + x * 5) % 256);
}

Bytes idx_images(int64_t n, int64_t side) {
  Bytes bytes;
  put_be32(bytes, 0x00000803);
  put_be32(bytes, static_cast<uint32_t>(n));
  put_be32(bytes, static_cast<uint32_t>(side));
  put_be32(bytes, static_cast<uint32_t>(side));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t y = 0; y < side; ++y) {
      for (int64_t x = 0; x < side; ++x) bytes.push_back(idx_pixel(i, y, x));
    }
  }
  return bytes;
}

Bytes idx_labels(int64_t n) {
  Bytes bytes;
  put_be32(bytes, 0x00000801);
  put_be32(bytes, static_cast<uint32_t>(n));
  for (int64_t i = 0; i < n; ++i) bytes.push_back(static_cast<uint8_t>(i % 10));
  return bytes;
}

ddpm::DatasetSpec idx_spec(const std::string& path, const std::string& split = "train", int64_t size = 6) {
  return ddpm::DatasetSpec{"idx", path, split, size, 1};
}

// Runs `load` and returns the DataError message, failing the test when nothing is thrown.
std::string error_of(const std::function<void()>& load) {
  try {
    load();
  } catch (const ddpm::DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

#define EXPECT_MESSAGE_HAS(message, fragment) \
  EXPECT_NE((message).find(fragment), std::string::npos) << "message: " << (message) << "\nmissing: " << (fragment)

void expect_idx_content(const ddpm::ImageDataset& dataset, int64_t n, int64_t side) {
  ASSERT_EQ(dataset.images.sizes(), (std::vector<int64_t>{n, 1, side, side}));
  ASSERT_EQ(dataset.labels.size(0), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(dataset.labels[i].item<int64_t>(), i % 10);
    for (int64_t y = 0; y < side; ++y) {
      for (int64_t x = 0; x < side; ++x) ASSERT_EQ(dataset.images[i][0][y][x].item<int>(), idx_pixel(i, y, x));
    }
  }
}

TEST(Idx, RawAndGzipFilesGiveTheSameImages) {
  TempDir raw, gz;
  write_bytes(raw / "train-images-idx3-ubyte", idx_images(12, 6));
  write_bytes(raw / "train-labels-idx1-ubyte", idx_labels(12));
  write_bytes(gz / "train-images-idx3-ubyte.gz", gzip_bytes(idx_images(12, 6)));
  write_bytes(gz / "train-labels-idx1-ubyte.gz", gzip_bytes(idx_labels(12)));
  expect_idx_content(ddpm::load_dataset(idx_spec(raw.str())), 12, 6);
  expect_idx_content(ddpm::load_dataset(idx_spec(gz.str())), 12, 6);
}

TEST(Idx, GzipIsDetectedByMagicNotByName) {
  TempDir dir;
  write_bytes(dir / "t10k-images-idx3-ubyte", gzip_bytes(idx_images(5, 6)));  // compressed, plain name
  write_bytes(dir / "t10k-labels-idx1-ubyte.gz", idx_labels(5));              // raw, .gz name
  expect_idx_content(ddpm::load_dataset(idx_spec(dir.str(), "test")), 5, 6);
}

TEST(Idx, WrongMagicNamesFileAndOffset) {
  TempDir dir;
  Bytes images = idx_images(3, 6);
  images[3] = 0x01;  // 0x00000801: a labels file where images belong
  write_bytes(dir / "train-images-idx3-ubyte", images);
  write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(3));
  const std::string message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, dir / "train-images-idx3-ubyte");
  EXPECT_MESSAGE_HAS(message, "wrong magic number 0x00000801 at offset 0 (expected 0x00000803)");
}

TEST(Idx, TruncatedFileSaysExpectedAndActualBytes) {
  TempDir dir;
  Bytes images = idx_images(3, 6);
  images.resize(images.size() - 10);
  write_bytes(dir / "train-images-idx3-ubyte.gz", gzip_bytes(images));
  write_bytes(dir / "train-labels-idx1-ubyte.gz", gzip_bytes(idx_labels(3)));
  const std::string message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, dir / "train-images-idx3-ubyte.gz");
  EXPECT_MESSAGE_HAS(message, "truncated IDX file: expected 124 bytes, got 114");
}

TEST(Idx, TruncatedGzipStreamIsAnError) {
  TempDir dir;
  Bytes compressed = gzip_bytes(idx_images(50, 6));
  compressed.resize(compressed.size() / 2);
  write_bytes(dir / "train-images-idx3-ubyte.gz", compressed);
  write_bytes(dir / "train-labels-idx1-ubyte.gz", gzip_bytes(idx_labels(50)));
  const std::string message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, dir / "train-images-idx3-ubyte.gz");
  EXPECT_MESSAGE_HAS(message, "truncated gzip stream");
}

TEST(Idx, ImageAndLabelCountsMustAgree) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte", idx_images(4, 6));
  write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(5));
  const std::string message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, "holds 4 images but " + (dir / "train-labels-idx1-ubyte") + " holds 5 labels");
}

TEST(Idx, MissingFileIsNamed) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte", idx_images(4, 6));
  const std::string message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, "missing file: " + (dir / "train-labels-idx1-ubyte") + "[.gz]");
}

TEST(Idx, ResolutionAndChannelsMustMatchTheConfig) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte", idx_images(2, 6));
  write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(2));
  const std::string size_message = error_of([&] { ddpm::load_dataset(idx_spec(dir.str(), "train", 32)); });
  EXPECT_MESSAGE_HAS(size_message, "holds 6x6 images with 1 channel(s), but the config asks for image_size 32");
  const std::string channel_message = error_of([&] {
    ddpm::load_dataset(ddpm::DatasetSpec{"idx", dir.str(), "train", 6, 3});
  });
  EXPECT_MESSAGE_HAS(channel_message, "and channels 3");
}

TEST(Idx, BadSplitAndFormatAreErrors) {
  TempDir dir;
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(idx_spec(dir.str(), "val")); }), "unknown split 'val'");
  EXPECT_MESSAGE_HAS(error_of([&] {
                       ddpm::load_dataset(ddpm::DatasetSpec{"lmdb", dir.str(), "train", 6, 1});
                     }),
                     "unknown data format 'lmdb'");
}

TEST(FashionMnist, RealTestSplitLoads) {
  const ddpm::ImageDataset data = ddpm::load_dataset(idx_spec("/usr/share/datasets/fashion-mnist", "test", 28));
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(data.images.scalar_type(), torch::kUInt8);
  // The published file: first labels 9 2 1 1 6, first image's pixel sum 33456, center pixel 110.
  EXPECT_EQ(data.labels.slice(0, 0, 5).to(torch::kInt32).sum().item<int>(), 9 + 2 + 1 + 1 + 6);
  EXPECT_EQ(data.labels[0].item<int64_t>(), 9);
  EXPECT_EQ(data.images[0].to(torch::kInt64).sum().item<int64_t>(), 33456);
  EXPECT_EQ(data.images[0][0][14][14].item<int>(), 110);
  EXPECT_TRUE(torch::equal(torch::bincount(data.labels), torch::full({10}, 1000, torch::kInt64)));
  const torch::Tensor x = ddpm::pixels_to_model_range(data.images.slice(0, 0, 100));
  EXPECT_EQ(x.min().item<float>(), -1.0f);
  EXPECT_EQ(x.max().item<float>(), 1.0f);
}

TEST(FashionMnist, RealTrainSplitLoads) {
  const ddpm::ImageDataset data = ddpm::load_dataset(idx_spec("/usr/share/datasets/fashion-mnist", "train", 28));
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(torch::bincount(data.labels), torch::full({10}, 6000, torch::kInt64)));
}

// A CIFAR-10 record: label, then R, G and B planes. Each plane is distinct so a mixed-up channel shows.
uint8_t cifar_pixel(int64_t record, int64_t channel, int64_t y, int64_t x) {
  return static_cast<uint8_t>((record * 11 + channel * 80 + y * 32 + x) % 256);
}

Bytes cifar_batch(int64_t records, int64_t first) {
  Bytes bytes;
  for (int64_t r = first; r < first + records; ++r) {
    bytes.push_back(static_cast<uint8_t>(r % 10));
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < 32; ++y) {
        for (int64_t x = 0; x < 32; ++x) bytes.push_back(cifar_pixel(r, c, y, x));
      }
    }
  }
  return bytes;
}

void write_cifar_train(const TempDir& dir, int files = 5) {
  for (int f = 1; f <= files; ++f) {
    write_bytes(dir / ("data_batch_" + std::to_string(f) + ".bin"), cifar_batch(2, 2 * (f - 1)));
  }
}

ddpm::DatasetSpec cifar_spec(const std::string& path, const std::string& split = "train") {
  return ddpm::DatasetSpec{"cifar10", path, split, 32, 3};
}

TEST(Cifar10, ChannelPlanesLandInTheirChannels) {
  TempDir dir;
  write_cifar_train(dir);
  const ddpm::ImageDataset data = ddpm::load_dataset(cifar_spec(dir.str()));
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  const auto pixels = data.images.accessor<uint8_t, 4>();
  for (int64_t r = 0; r < 10; ++r) {
    EXPECT_EQ(data.labels[r].item<int64_t>(), r % 10);
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < 32; ++y) {
        for (int64_t x = 0; x < 32; ++x) ASSERT_EQ(pixels[r][c][y][x], cifar_pixel(r, c, y, x)) << r << c << y << x;
      }
    }
  }
}

TEST(Cifar10, TestSplitReadsTestBatch) {
  TempDir dir;
  write_bytes(dir / "test_batch.bin", cifar_batch(3, 100));
  const ddpm::ImageDataset data = ddpm::load_dataset(cifar_spec(dir.str(), "test"));
  ASSERT_EQ(data.size(), 3);
  EXPECT_EQ(data.images[2][1][5][7].item<int>(), cifar_pixel(102, 1, 5, 7));
  EXPECT_EQ(data.labels[2].item<int64_t>(), 2);
}

TEST(Cifar10, SizeNotAMultipleOfTheRecordIsAnError) {
  TempDir dir;
  write_cifar_train(dir);
  Bytes bad = cifar_batch(2, 6);
  bad.resize(bad.size() - 100);
  write_bytes(dir / "data_batch_4.bin", bad);
  const std::string message = error_of([&] { ddpm::load_dataset(cifar_spec(dir.str())); });
  EXPECT_MESSAGE_HAS(message, dir / "data_batch_4.bin");
  EXPECT_MESSAGE_HAS(message, "size 6046 bytes is not a multiple of the 3073-byte CIFAR-10 record");
  EXPECT_MESSAGE_HAS(message, "from offset 3073");
}

TEST(Cifar10, MissingAndEmptyFilesAreNamed) {
  TempDir dir;
  write_cifar_train(dir, 4);
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(cifar_spec(dir.str())); }),
                     "missing file: " + (dir / "data_batch_5.bin"));
  write_bytes(dir / "data_batch_5.bin", {});
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(cifar_spec(dir.str())); }),
                     (dir / "data_batch_5.bin") + ": empty CIFAR-10 batch file (0 bytes)");
}

TEST(Cifar10, BadLabelNamesRecordAndOffset) {
  TempDir dir;
  Bytes bytes = cifar_batch(3, 0);
  bytes[2 * 3073] = 17;
  write_bytes(dir / "test_batch.bin", bytes);
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(cifar_spec(dir.str(), "test")); }),
                     "record 2 (offset 6146) has label 17");
}

TEST(Cifar10, ChannelCountMustMatch) {
  TempDir dir;
  write_bytes(dir / "test_batch.bin", cifar_batch(1, 0));
  EXPECT_MESSAGE_HAS(error_of([&] {
                       ddpm::load_dataset(ddpm::DatasetSpec{"cifar10", dir.str(), "test", 32, 1});
                     }),
                     "holds 32x32 images with 3 channel(s)");
}

void write_png(const std::string& path, int width, int height, int channels, const Bytes& pixels) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_NE(stbi_write_png(path.c_str(), width, height, channels, pixels.data(), width * channels), 0);
}

Bytes solid(int width, int height, const Bytes& color) {
  Bytes pixels;
  for (int i = 0; i < width * height; ++i) pixels.insert(pixels.end(), color.begin(), color.end());
  return pixels;
}

TEST(ImageFolder, DecodesAKnownPngPixelForPixel) {
  TempDir dir;
  Bytes pixels;  // 4x4 RGB, interleaved
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      pixels.push_back(static_cast<uint8_t>(10 * x + y));
      pixels.push_back(static_cast<uint8_t>(100 + 10 * y));
      pixels.push_back(static_cast<uint8_t>(255 * (x == 3)));
    }
  }
  write_png(dir / "one.png", 4, 4, 3, pixels);
  const ddpm::ImageDataset data = ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir.str(), "train", 4, 3});
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{1, 3, 4, 4}));
  EXPECT_EQ(data.labels[0].item<int64_t>(), -1);
  const auto out = data.images.accessor<uint8_t, 4>();
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      EXPECT_EQ(out[0][0][y][x], 10 * x + y);
      EXPECT_EQ(out[0][1][y][x], 100 + 10 * y);
      EXPECT_EQ(out[0][2][y][x], x == 3 ? 255 : 0);
    }
  }
  const torch::Tensor x = ddpm::pixels_to_model_range(data.images);
  EXPECT_EQ(x[0][2][0][3].item<float>(), 1.0f);
  EXPECT_EQ(x[0][2][0][0].item<float>(), -1.0f);
}

TEST(ImageFolder, WalksSubfoldersInSortedOrderAndConvertsChannels) {
  TempDir dir;
  write_png(dir / "b.png", 6, 6, 3, solid(6, 6, {0, 0, 255}));
  write_png(dir / "a/c.png", 6, 6, 1, solid(6, 6, {50}));          // gray → replicated
  write_png(dir / "a.PNG", 6, 6, 4, solid(6, 6, {255, 0, 0, 0}));  // alpha dropped
  write_bytes(dir / "notes.txt", {1, 2, 3});                       // not an image: skipped
  const ddpm::ImageDataset rgb = ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir.str(), "", 3, 3});
  ASSERT_EQ(rgb.size(), 3);
  // Sorted paths: a.PNG < a/c.png < b.png ('.' sorts before '/').
  EXPECT_TRUE(torch::equal(rgb.images[0].flatten(1).select(1, 0), torch::tensor({255, 0, 0}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(rgb.images[1].flatten(1).select(1, 4), torch::tensor({50, 50, 50}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(rgb.images[2].flatten(1).select(1, 8), torch::tensor({0, 0, 255}, torch::kUInt8)));
  const ddpm::ImageDataset gray = ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir.str(), "", 3, 1});
  ASSERT_EQ(gray.images.sizes(), (std::vector<int64_t>{3, 1, 3, 3}));
  EXPECT_EQ(gray.images[0][0][1][1].item<int>(), 76);  // PIL luma of pure red
  EXPECT_EQ(gray.images[1][0][1][1].item<int>(), 50);
  EXPECT_EQ(gray.images[2][0][1][1].item<int>(), 29);  // pure blue
}

TEST(ImageFolder, ResizesAndCropsLargeImages) {
  TempDir dir;
  // 64x32, left half dark, right half bright: at size 8 the box steps give 16x8 and the center crop keeps
  // columns 4..11, half of each side.
  Bytes pixels;
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 64; ++x) pixels.push_back(x < 32 ? 20 : 220);
  }
  write_png(dir / "wide.png", 64, 32, 1, pixels);
  const ddpm::ImageDataset data = ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir.str(), "", 8, 1});
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{1, 1, 8, 8}));
  for (int x = 0; x < 8; ++x) EXPECT_EQ(data.images[0][0][5][x].item<int>(), x < 4 ? 20 : 220) << x;
}

TEST(ImageFolder, DecodesJpeg) {
  TempDir dir;
  const Bytes pixels = solid(16, 16, {200, 100, 50});
  ASSERT_NE(stbi_write_jpg((dir / "photo.jpeg").c_str(), 16, 16, 3, pixels.data(), 100), 0);
  const ddpm::ImageDataset data = ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir.str(), "", 16, 3});
  EXPECT_NEAR(data.images[0][0][8][8].item<int>(), 200, 3);
  EXPECT_NEAR(data.images[0][1][8][8].item<int>(), 100, 3);
  EXPECT_NEAR(data.images[0][2][8][8].item<int>(), 50, 3);
}

// stb_image 2.27 trusts a JPEG's tables (data/image_folder.cpp): a file whose tables would make it write past a
// Huffman table, or decode with memory it never initialized, is refused before stb sees it, naming the offset.
TEST(ImageFolder, JpegWithUndefinedOrOversizedTablesIsRefused) {
  const Bytes pixels = solid(16, 16, {200, 100, 50});
  Bytes jpeg;
  const auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<Bytes*>(context);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  ASSERT_NE(stbi_write_jpg_to_func(append, &jpeg, 16, 16, 3, pixels.data(), 90), 0);
  const auto find_marker = [&jpeg](uint8_t marker) {
    for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
      if (jpeg[i] == 0xff && jpeg[i + 1] == marker) return i;
    }
    ADD_FAILURE() << "no marker " << int{marker};
    return size_t{0};
  };
  const size_t sof = find_marker(0xc0), dht = find_marker(0xc4), sos = find_marker(0xda);
  // stb_image_write's layout: SOS FF DA, length, 3 components of (id, DC << 4 | AC), ...; SOF FF C0, length,
  // precision, height, width, 3 components of (id, sampling, quantization table); DHT FF C4, length, class/id, counts.
  ASSERT_EQ(jpeg[sos + 4], 3);
  ASSERT_EQ(jpeg[sos + 5], 1);
  ASSERT_EQ(jpeg[sof + 9], 3);
  ASSERT_EQ(jpeg[sof + 10], 1);
  EXPECT_EQ(ddpm::decode_image(jpeg, "good.jpg").width, 16);
  const auto refusal = [](const Bytes& bytes) { return error_of([&] { ddpm::decode_image(bytes, "bad.jpg"); }); };
  const std::string prefix = "cannot decode image bad.jpg (" + std::to_string(jpeg.size()) + " bytes): corrupt JPEG: ";
  const std::string scan = prefix + "the scan at offset " + std::to_string(sos);

  Bytes bad = jpeg;
  bad[sos + 6] = 0x30;  // component 1: DC table 3, AC table 0
  EXPECT_MESSAGE_HAS(refusal(bad), scan + " uses Huffman table DC 3, which no DHT segment before it defines");
  bad[sos + 6] = 0x02;  // DC table 0, AC table 2
  EXPECT_MESSAGE_HAS(refusal(bad), scan + " uses Huffman table AC 2, which no DHT segment before it defines");
  bad = jpeg;
  bad[sof + 12] = 2;  // component 1 dequantized with table 2
  EXPECT_MESSAGE_HAS(refusal(bad), scan + " decodes component 1 with quantization table 2, which no DQT segment before it defines");
  bad = jpeg;
  bad[dht + 19] = 200;  // the first table's 15- and 16-bit code counts: with the others, over 256
  bad[dht + 20] = 200;
  EXPECT_MESSAGE_HAS(refusal(bad), prefix + "the Huffman table at offset " + std::to_string(dht + 5) + " declares more than 256 codes");
}

TEST(ImageFolder, BadFilesAndFoldersAreNamed) {
  TempDir dir;
  const ddpm::DatasetSpec spec{"folder", dir.str(), "", 4, 3};
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(spec); }), "image folder " + dir.str() + " holds no");
  EXPECT_MESSAGE_HAS(error_of([&] {
                       ddpm::load_dataset(ddpm::DatasetSpec{"folder", dir / "nope", "", 4, 3});
                     }),
                     "missing image folder: " + (dir / "nope"));
  write_png(dir / "good.png", 4, 4, 3, solid(4, 4, {1, 2, 3}));
  write_bytes(dir / "zero.png", {});
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(spec); }),
                     "cannot decode image " + (dir / "zero.png") + ": the file is empty (0 bytes)");
  write_bytes(dir / "zero.png", {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5});
  EXPECT_MESSAGE_HAS(error_of([&] { ddpm::load_dataset(spec); }), "cannot decode image " + (dir / "zero.png"));
}

}  // namespace
