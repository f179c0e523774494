// Image: LRA's grayscale CIFAR-10 (`image/input_pipeline.py`), and Fashion-MNIST as the default when
// CIFAR-10 is not on the machine (Debian's dataset-fashion-mnist package installs it).
//
// Format facts relied on (docs/data-formats.md sections 5 and 6):
// - CIFAR-10 binary: cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin (cifar-10-binary.tar.gz
//   holds that folder); each record is 3073 bytes: a label byte 0..9, then the 32x32 R, G and B
//   planes, row-major. The released files hold 10,000 records each; any whole number is read.
// - LRA: TFDS cifar10 train[:90%] (45k) = train, train[90%:] (5k) = val, test (10k) = test, where
//   TFDS's train is data_batch_1..5 in order. Pixels go through tf.image.rgb_to_grayscale on uint8:
//   f = float32(c) * float32(1/255); g = 0.2989 f_R + 0.5870 f_G + 0.1140 f_B in float32;
//   token = trunc(g * 255.5) clamped to 0..255 (convert_image_dtype's saturate cast). White -> 255.
//   Tokens are the 1024 pixel values, row-major; vocab 256; 10 classes.
// - IDX (Fashion-MNIST): {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz; big-endian header: magic
//   0x00000803 (images, dims N, 28, 28) or 0x00000801 (labels, dim N), then uint8 data row-major.
//   Here train[:90%] (54k) = train, train[90%:] (6k) = val, t10k (10k) = test; 784 tokens.
// - LRA's model masks token 0 (`inputs > 0`), so black pixels count as padding: the task option
//   zero_is_padding (default true) sets Split::zero_is_padding to reproduce that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace lra::image {

constexpr int kVocabSize = 256;
constexpr int kNumClasses = 10;
constexpr int kCifarLength = 1024;    // 32 x 32
constexpr int kFashionLength = 784;   // 28 x 28
constexpr int kCifarRecordBytes = 1 + 3 * kCifarLength;
constexpr const char* kSystemFashionMnist = "/usr/share/datasets/fashion-mnist";

// tf.image.rgb_to_grayscale on one uint8 pixel, emulated in float32.
uint8_t tf_grayscale(uint8_t r, uint8_t g, uint8_t b);

// Appends the records of one CIFAR-10 binary batch file (`name` is used in messages): grayscale
// tokens and labels. Throws when the size is not a positive multiple of 3073 or a label is not 0..9.
void decode_cifar_batch(const std::string& bytes, const std::string& name, Split& out);

// A dataset's two released splits, in file order (train is split into train and val later).
struct Parsed {
  Split train, test;
};

// cifar-10-batches-bin/: data_batch_1..5.bin then test_batch.bin.
Parsed read_cifar_folder(const std::string& dir);
// cifar-10-binary.tar.gz: the same members (matched by file name inside any folder).
Parsed read_cifar_archive(const std::string& path);

// One IDX file's contents: `dims` from the header, the uint8 data after it. Checks the magic number
// (2051 for images, 2049 for labels) and that the data size is the product of the dimensions.
std::vector<uint8_t> parse_idx(const std::string& bytes, const std::string& path, uint32_t magic,
                               std::vector<uint32_t>& dims);
// The four Fashion-MNIST files in `dir` (gzip-compressed with .gz, or already decompressed).
Parsed read_fashion_mnist(const std::string& dir);

// Where each dataset is, per the search order of the task's `dataset` option.
struct Source {
  std::string dataset;  // "cifar10" or "fashion-mnist"
  enum Kind { Folder, Archive } kind = Folder;
  std::string path;
};
// CIFAR-10: data_dir itself (it holds data_batch_1.bin), data_dir/cifar-10-batches-bin/,
// data_dir/cifar-10-binary.tar.gz. `tried` receives the places looked at.
bool find_cifar(const std::string& data_dir, Source& src, std::vector<std::string>& tried);
// Fashion-MNIST: data_dir, data_dir/fashion-mnist/, then the system folder `system_dir`.
bool find_fashion_mnist(const std::string& data_dir, const std::string& system_dir, Source& src,
                        std::vector<std::string>& tried);

// The task's load(), with the system Fashion-MNIST folder as a parameter for tests.
TaskData load(const DataOptions& opt, const std::string& system_dir = kSystemFashionMnist);
// The task's data_status(): what load(opt) would read; counting parses it into the same cache.
DataStatus data_status(const DataOptions& opt, const std::string& system_dir = kSystemFashionMnist);

}  // namespace lra::image
