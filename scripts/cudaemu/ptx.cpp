// ptx.cpp: reads the .entry declarations of a PTX module for the emulator's cuModuleLoadDataEx.
// The emulator never runs PTX (it runs the same kernels compiled from kernels/*.cu as C++), but the
// PTX says which kernels the module holds and with which parameter sizes, launch bounds and static
// shared memory; the driver checks the first two against the compiled kernels, so a stale PTX or an
// emulator built from other sources is reported instead of being run with garbled arguments.
//
// What it does NOT do: check instructions, types or syntax beyond the entry headers (there is no
// ptxas here, so no JIT error log and no register counts), or read .func/.global/.const.
//
// The emulator checks kernel logic only; it does not model memory ordering, timing, ptxas register
// allocation or real occupancy (emu.h lists every gap, driver.cpp how a wild pointer becomes error 700).
#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "runtime.h"

namespace emu {
namespace {

// strip_comments removes // and /* */ comments, keeping line breaks.
std::string strip_comments(const char* s) {
  std::string out;
  for (; *s; s++) {
    if (s[0] == '/' && s[1] == '/') {
      while (*s && *s != '\n') s++;
      if (!*s) break;
    } else if (s[0] == '/' && s[1] == '*') {
      s += 2;
      while (*s && !(s[0] == '*' && s[1] == '/')) s++;
      if (!*s) break;
      s++;
      continue;
    }
    out += *s;
  }
  return out;
}

// type_size is the byte size of a PTX fundamental type name without its dot (u32, f64, b8, pred).
unsigned type_size(const std::string& t) {
  if (t.size() < 2) return 0;
  if (t == "pred") return 1;
  const char c = t[0];
  if (c != 'u' && c != 's' && c != 'b' && c != 'f') return 0;
  const unsigned bits = (unsigned)atoi(t.c_str() + 1);
  return bits == 8 || bits == 16 || bits == 32 || bits == 64 ? bits / 8 : 0;
}

// decl_size is the byte size of a declaration such as ".param .u64 .ptr .global .align 4 p" or
// ".shared .align 8 .b8 name[256]": the first fundamental type times the product of the [n]s.
unsigned decl_size(const std::string& d) {
  unsigned size = 0;
  for (size_t i = 0; i < d.size() && !size; i++) {
    if (d[i] != '.') continue;
    size_t j = i + 1;
    while (j < d.size() && isalnum((unsigned char)d[j])) j++;
    size = type_size(d.substr(i + 1, j - i - 1));
  }
  for (size_t i = d.find('['); size && i != std::string::npos; i = d.find('[', i + 1)) size *= (unsigned)atoi(d.c_str() + i + 1);
  return size;
}

}  // namespace

bool parse_ptx(const char* text, std::vector<PtxEntry>& out, std::string& err) {
  out.clear();
  if ((unsigned char)text[0] == 0x7f && strncmp(text + 1, "ELF", 3) == 0) {
    err = "the image is a cubin (ELF); only PTX text can be emulated";
    return false;
  }
  const std::string s = strip_comments(text);
  if (s.find(".version") == std::string::npos) {
    err = "the image is not PTX text (no .version directive)";
    return false;
  }
  for (size_t pos = s.find(".entry"); pos != std::string::npos; pos = s.find(".entry", pos)) {
    PtxEntry e;
    size_t i = pos + 6;
    while (i < s.size() && isspace((unsigned char)s[i])) i++;
    const size_t nameStart = i;
    while (i < s.size() && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '$')) i++;
    e.name = s.substr(nameStart, i - nameStart);
    const size_t open = s.find_first_of("({", i);
    if (e.name.empty() || open == std::string::npos) {
      err = "cannot read the .entry at offset " + std::to_string(pos);
      return false;
    }
    size_t bodyStart = open;
    if (s[open] == '(') {
      const size_t close = s.find(')', open);
      if (close == std::string::npos) {
        err = "unterminated parameter list of .entry " + e.name;
        return false;
      }
      const std::string params = s.substr(open + 1, close - open - 1);
      size_t a = 0;
      while (a < params.size()) {
        size_t b = params.find(',', a);
        if (b == std::string::npos) b = params.size();
        const std::string p = params.substr(a, b - a);
        if (p.find(".param") != std::string::npos) {
          const unsigned sz = decl_size(p.substr(p.find(".param") + 6));
          if (sz == 0) {
            err = ".entry " + e.name + ": cannot size parameter \"" + p + "\"";
            return false;
          }
          e.paramSizes.push_back(sz);
        }
        a = b + 1;
      }
      bodyStart = s.find('{', close);
      if (bodyStart == std::string::npos) {
        err = ".entry " + e.name + " has no body";
        return false;
      }
      // Performance directives between the parameter list and the body.
      const std::string dirs = s.substr(close + 1, bodyStart - close - 1);
      for (const char* d : {".maxntid", ".reqntid"}) {
        const size_t k = dirs.find(d);
        if (k == std::string::npos) continue;
        unsigned prod = 1;
        const char* c = dirs.c_str() + k + strlen(d);
        for (int dim = 0; dim < 3; dim++) {
          while (*c == ' ' || *c == '\t' || *c == ',') c++;
          if (!isdigit((unsigned char)*c)) break;
          prod *= (unsigned)strtoul(c, (char**)&c, 10);
        }
        if (e.maxThreads == 0 || prod < e.maxThreads) e.maxThreads = prod;
      }
    }
    // The body runs to the matching brace; its .shared declarations are the static shared memory.
    int depth = 0;
    size_t end = bodyStart;
    for (; end < s.size(); end++) {
      if (s[end] == '{') depth++;
      if (s[end] == '}' && --depth == 0) break;
    }
    const std::string body = s.substr(bodyStart, end - bodyStart);
    for (size_t k = body.find(".shared"); k != std::string::npos; k = body.find(".shared", k + 7)) {
      const size_t semi = body.find(';', k);
      const std::string d = body.substr(k + 7, semi - k - 7);
      // Declarations only, not ld.shared/st.shared instructions (those follow a letter or dot).
      if (k > 0 && (isalnum((unsigned char)body[k - 1]) || body[k - 1] == '.')) continue;
      e.sharedBytes += decl_size(d);
    }
    out.push_back(std::move(e));
    pos = end;  // the next .entry starts after this body
  }
  if (out.empty()) {
    err = "the PTX declares no .entry";
    return false;
  }
  return true;
}

}  // namespace emu
