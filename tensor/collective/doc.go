// Package collective is dlf's ring all-reduce for data-parallel training: N ranks (devices, or
// goroutines on the CPU, in one process) each hold a buffer of the same length, and after AllReduce
// every rank holds the element-wise sum (or mean) of all of them.
//
// # Algorithm
//
// The ring all-reduce of Patarasuk and Yuan ("Bandwidth optimal all-reduce algorithms for clusters
// of workstations", JPDC 2009), as NCCL and Horovod use it: the buffer is split into N chunks;
// in N−1 reduce-scatter steps rank r sends chunk (r−s) mod N to rank r+1, which adds it into its
// own copy, so that rank r ends up owning the full sum of chunk (r+1) mod N; in N−1 all-gather
// steps the owned chunks travel once more round the ring and are copied. Every rank sends and
// receives 2(N−1)/N of the buffer, which is optimal, and every final value is computed once by its
// owner and copied, so all ranks hold bit-identical results — what keeps data-parallel replicas in
// lockstep. Each chunk is further cut into slices (Options.SliceElems) that are pipelined: while
// slice k of a step is being reduced, slice k+1 is already on the wire, which keeps every link
// busy. Chunks are near-equal (sizes differ by at most one element) and every chunk has the same
// number of slices, so buffers that do not divide by N, and buffers smaller than N (some chunks
// empty), need no special case.
//
// # Transports
//
// HostRing runs the ranks as goroutines, each with its own buffer; a link is a bounded queue of
// staging buffers owned by the receiver, so every code path above the transport (schedule,
// slicing, buckets, averaging) runs in CI without a GPU. DeviceRing (device.go) runs the same
// schedule on CUDA devices: transfers are cuMemcpyPeerAsync copies into the receiver's staging
// buffers (staged through pinned host memory where the devices cannot access each other), the
// reduction is a kernel (kernels/collective.cu), each rank's work is on its own stream, and events
// order the steps across streams.
//
// # Gradient buckets
//
// Reducer groups a rank's parameter gradients into buckets in reverse parameter order (the order
// backward produces them) and all-reduces a bucket as soon as its last gradient is final, on a
// worker goroutine, so communication overlaps the rest of the backward pass. It is fed by
// autodiff's Tape.OnGradReady. DeviceReducer (devreducer.go) is the same bucketing for ranks that
// are all CUDA backends: gradients are packed into device buckets on each backend's stream, and as
// soon as every rank has packed a bucket, DeviceRing reduces it after the packing (events), its
// driver calls issued from the ring's own thread so that they do not wait for the device workers
// still busy with backward; the averages are copied back on the backend streams, with no host
// staging and no host synchronisation. Its averages are bit-identical to Reducer's over HostRing.
package collective
