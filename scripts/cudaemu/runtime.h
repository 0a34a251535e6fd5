// runtime.h: the emulator's internal interfaces, shared by the generated kernel wrappers
// (gen_dispatch.py), the fiber scheduler (fiber.cpp), the PTX reader (ptx.cpp) and the fake driver
// (driver.cpp). Kernel sources never see it; they see emu.h.
//
// A Kernel describes one extern "C" __global__ function compiled from kernels/*.cu: its name, a
// thunk that unpacks cuLaunchKernel's kernelParams (an array of pointers to the argument values)
// into a real C++ call, and the size and pointer-ness of every parameter. The parameter list comes
// from the compiler (template deduction on the function's own type, see Describe), not from parsing
// C declarations, so it cannot drift from the source. What it does NOT do: marshal structs with
// padding differently from the C++ ABI (none of dlf's kernels takes a struct).
//
// The emulator checks kernel logic only; it does not model memory ordering, timing, ptxas register
// allocation or real occupancy (emu.h lists every gap, driver.cpp how a wild pointer becomes error 700).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#pragma GCC visibility push(hidden)
namespace emu {

constexpr int kMaxParams = 64;  // ptrMask has one bit per parameter

struct Kernel {
  const char* name;    // the extern "C" name, as in the PTX .entry
  const char* family;  // source file base name (kernels/<family>.cu)
  void (*invoke)(void* const* params);
  int nparams;
  unsigned short sizes[kMaxParams];  // sizeof each parameter, in order
  unsigned long long ptrMask;        // bit i set: parameter i is a pointer
};

// Describe<&fn> builds fn's Kernel from fn's type alone.
template <auto F>
struct Describe;

template <class... A, void (*F)(A...)>
struct Describe<F> {
  static_assert(sizeof...(A) <= kMaxParams, "emu: kernel has more than 64 parameters");

  template <std::size_t... I>
  static void call(void* const* p, std::index_sequence<I...>) {
    F(*static_cast<std::remove_cv_t<A>*>(p[I])...);
  }
  static void invoke(void* const* p) { call(p, std::index_sequence_for<A...>{}); }

  template <std::size_t... I>
  static constexpr unsigned long long mask(std::index_sequence<I...>) {
    return (0ull | ... | ((unsigned long long)std::is_pointer_v<A> << I));
  }
  static constexpr Kernel make(const char* name, const char* family) {
    return Kernel{name, family, &invoke, (int)sizeof...(A), {(unsigned short)sizeof(A)...},
                  mask(std::index_sequence_for<A...>{})};
  }
};

// kernel_table lists every compiled kernel, sorted by name, ending with nullptr (table.cpp,
// generated).
extern const Kernel* const kernel_table[];

// Outcome of running one grid.
struct LaunchResult {
  int code = 0;         // 0, or the CUresult the launch leaves behind (700, 719)
  std::string message;  // what went wrong, for stderr
  unsigned long long faultAddr = 0;
  bool faulted = false;  // a hardware fault (SIGSEGV/SIGBUS/SIGFPE) ended the kernel
};

struct Dim { unsigned x, y, z; };

// run_grid executes k over the grid, one block at a time, with params as given to cuLaunchKernel.
// The caller holds the driver lock (one grid at a time process-wide: __shared__ is static).
LaunchResult run_grid(const Kernel& k, void* const* params, Dim grid, Dim block);

// install_fault_handlers routes SIGSEGV/SIGBUS/SIGFPE raised by a running kernel to run_grid and
// passes every other one on to the handler it replaces (the Go runtime's). Idempotent.
void install_fault_handlers();

// PtxEntry is what the PTX says about one .entry: parameter sizes, launch bounds, static shared
// memory.
struct PtxEntry {
  std::string name;
  std::vector<unsigned> paramSizes;
  unsigned maxThreads = 0;   // product of .maxntid/.reqntid; 0: none declared
  unsigned sharedBytes = 0;  // sum of the .shared declarations inside the entry
};

// parse_ptx reads the .entry declarations of a PTX module. It returns false and sets err when the
// text is not PTX it understands (a cubin/fatbin, or no .version/.entry). It does not validate
// instructions: the emulator never assembles PTX.
bool parse_ptx(const char* text, std::vector<PtxEntry>& out, std::string& err);

}  // namespace emu
#pragma GCC visibility pop

// EMU_KERNEL(family, name) defines emu_kernel_<name>, the Kernel of an extern "C" kernel that is
// in scope (the generated wrapper includes its .cu first).
#define EMU_KERNEL(family, name) \
  extern const emu::Kernel emu_kernel_##name; \
  const emu::Kernel emu_kernel_##name = emu::Describe<&name>::make(#name, #family);
