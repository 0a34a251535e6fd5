package kgen

import (
	"fmt"
	"strconv"
	"strings"
)

// The PTX every committed module must carry: nvcc 11.8 with
// -arch=compute_80 emits PTX ISA 7.8 for sm_80, which the driver JITs for
// Ampere and Hopper (go-cuda.md §4.2-4.3).
const (
	WantPTXVersion = "7.8"
	WantPTXTarget  = "sm_80"
)

// PTXParam is one .param of a PTX .entry.
type PTXParam struct {
	Name  string
	Type  string // state-space-free type without the dot: "u64", "f32", "b8"
	Size  int    // bytes: width of Type times the array length, if any
	Align int    // .align value, 0 when absent
}

// PTXEntry is one kernel entry point.
type PTXEntry struct {
	Name   string
	Line   int
	Params []PTXParam
}

// PTXModule is what the generator and tests need from a PTX file.
type PTXModule struct {
	Version     string // .version, e.g. "7.8"
	Target      string // .target, e.g. "sm_80"
	AddressSize int    // .address_size
	Entries     []PTXEntry
}

// Entry returns the entry called name.
func (m *PTXModule) Entry(name string) (PTXEntry, bool) {
	for _, e := range m.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return PTXEntry{}, false
}

// ptxTypeSize gives the width in bytes of PTX fundamental types.
var ptxTypeSize = map[string]int{
	"b8": 1, "u8": 1, "s8": 1,
	"b16": 2, "u16": 2, "s16": 2, "f16": 2,
	"b32": 4, "u32": 4, "s32": 4, "f32": 4,
	"b64": 8, "u64": 8, "s64": 8, "f64": 8,
}

// ParsePTX reads the header directives and every .entry with its .param
// list; file is used in errors. Comments are ignored; function bodies are
// skipped.
func ParsePTX(file, src string) (*PTXModule, error) {
	m := &PTXModule{}
	toks := ptxTokens(src)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.text {
		case ".version", ".target", ".address_size":
			if i+1 >= len(toks) {
				return nil, fmt.Errorf("%s:%d: %s without a value", file, t.line, t.text)
			}
			v := toks[i+1].text
			switch t.text {
			case ".version":
				m.Version = v
			case ".target":
				m.Target = v
			case ".address_size":
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: bad .address_size %q", file, t.line, v)
				}
				m.AddressSize = n
			}
			i++
		case ".entry":
			e, next, err := parseEntry(file, toks, i+1)
			if err != nil {
				return nil, err
			}
			m.Entries = append(m.Entries, e)
			i = next
		}
	}
	if m.Version == "" || m.Target == "" {
		return nil, fmt.Errorf("%s: not PTX: no .version/.target directive", file)
	}
	return m, nil
}

// ptxToken is a word or a punctuation character of PTX.
type ptxToken struct {
	text string
	line int
}

// ptxTokens splits PTX into words and the punctuation ( ) [ ] , { } ;
// dropping // and /* */ comments.
func ptxTokens(src string) []ptxToken {
	var out []ptxToken
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return out
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case strings.IndexByte("()[],{};", c) >= 0:
			out = append(out, ptxToken{string(c), line})
			i++
		default:
			j := i
			for j < len(src) && strings.IndexByte("()[],{}; \t\r\n", src[j]) < 0 {
				j++
			}
			out = append(out, ptxToken{src[i:j], line})
			i = j
		}
	}
	return out
}

// parseEntry parses "name ( .param ..., ... )" starting at toks[i] and
// returns the index of the closing parenthesis.
func parseEntry(file string, toks []ptxToken, i int) (PTXEntry, int, error) {
	if i >= len(toks) {
		return PTXEntry{}, i, fmt.Errorf("%s: .entry without a name", file)
	}
	e := PTXEntry{Name: toks[i].text, Line: toks[i].line}
	i++
	if i >= len(toks) || toks[i].text != "(" {
		return e, i, nil // an entry without parameters
	}
	i++
	var cur []ptxToken
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		p, err := parsePTXParam(cur)
		if err != nil {
			return fmt.Errorf("%s:%d: entry %s: %v", file, cur[0].line, e.Name, err)
		}
		e.Params = append(e.Params, p)
		cur = cur[:0]
		return nil
	}
	for ; i < len(toks); i++ {
		switch toks[i].text {
		case ",":
			if err := flush(); err != nil {
				return e, i, err
			}
		case ")":
			if err := flush(); err != nil {
				return e, i, err
			}
			return e, i, nil
		default:
			cur = append(cur, toks[i])
		}
	}
	return e, i, fmt.Errorf("%s:%d: entry %s: unterminated parameter list", file, e.Line, e.Name)
}

// parsePTXParam parses ".param [.ptr .space] [.align N] .type name [ [M] ]".
func parsePTXParam(toks []ptxToken) (PTXParam, error) {
	if toks[0].text != ".param" {
		return PTXParam{}, fmt.Errorf("expected .param, got %q", toks[0].text)
	}
	var p PTXParam
	count := 1
	for j := 1; j < len(toks); j++ {
		t := toks[j].text
		switch {
		case t == ".align":
			if j+1 >= len(toks) {
				return p, fmt.Errorf(".align without a value")
			}
			n, err := strconv.Atoi(toks[j+1].text)
			if err != nil {
				return p, fmt.Errorf("bad .align %q", toks[j+1].text)
			}
			p.Align = n
			j++
		case t == ".ptr" || t == ".global" || t == ".const" || t == ".shared" || t == ".local":
			// pointer annotations of a .u64 parameter; the width is the type's
		case strings.HasPrefix(t, "."):
			if _, ok := ptxTypeSize[t[1:]]; !ok {
				return p, fmt.Errorf("unknown parameter type %s", t)
			}
			p.Type = t[1:]
		case t == "[":
			if j+2 >= len(toks) || toks[j+2].text != "]" {
				return p, fmt.Errorf("bad array suffix on %s", p.Name)
			}
			n, err := strconv.Atoi(toks[j+1].text)
			if err != nil || n <= 0 {
				return p, fmt.Errorf("bad array length %q on %s", toks[j+1].text, p.Name)
			}
			count = n
			j += 2
		default:
			if p.Name != "" {
				return p, fmt.Errorf("unexpected %q after parameter %s", t, p.Name)
			}
			p.Name = t
		}
	}
	if p.Type == "" || p.Name == "" {
		return p, fmt.Errorf("incomplete .param declaration")
	}
	p.Size = ptxTypeSize[p.Type] * count
	return p, nil
}

// CheckPTX verifies that m (parsed from ptxFile) declares exactly the
// kernels of one .cu file, each with the same parameter count, order, byte
// widths and kinds as its C signature, and carries the expected header.
func CheckPTX(ptxFile string, m *PTXModule, kernels []Kernel) error {
	var errs []string
	if m.Version != WantPTXVersion || m.Target != WantPTXTarget || m.AddressSize != 64 {
		errs = append(errs, fmt.Sprintf("header says .version %s .target %s .address_size %d, want %s/%s/64 (nvcc 11.8 -arch=compute_80)",
			m.Version, m.Target, m.AddressSize, WantPTXVersion, WantPTXTarget))
	}
	declared := map[string]bool{}
	for _, k := range kernels {
		declared[k.Name] = true
		e, ok := m.Entry(k.Name)
		if !ok {
			errs = append(errs, fmt.Sprintf("no .entry %s (declared at %s:%d): regenerate the PTX", k.Name, k.File, k.Line))
			continue
		}
		if len(e.Params) != len(k.Params) {
			errs = append(errs, fmt.Sprintf("entry %s has %d params, %s:%d declares %d", k.Name, len(e.Params), k.File, k.Line, len(k.Params)))
			continue
		}
		for i, cp := range k.Params {
			if msg := paramMismatch(cp, e.Params[i]); msg != "" {
				errs = append(errs, fmt.Sprintf("entry %s param %d (%s %s): %s", k.Name, i, cp.CType, cp.Name, msg))
			}
		}
	}
	for _, e := range m.Entries {
		if !declared[e.Name] {
			errs = append(errs, fmt.Sprintf("entry %s (line %d) is not declared extern \"C\" __global__ in the .cu: stale PTX", e.Name, e.Line))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s:\n\t%s", ptxFile, strings.Join(errs, "\n\t"))
	}
	return nil
}

// paramMismatch explains how a C parameter and its PTX .param disagree.
func paramMismatch(c Param, p PTXParam) string {
	if c.Size != p.Size {
		return fmt.Sprintf("C size %d bytes, PTX .%s %s is %d bytes", c.Size, p.Type, p.Name, p.Size)
	}
	if strings.HasPrefix(p.Type, "b") && p.Size != ptxTypeSize[p.Type] {
		return "" // a byte array: only the size is meaningful
	}
	isFloat := strings.HasPrefix(p.Type, "f")
	if c.Float != isFloat {
		return fmt.Sprintf("C %s but PTX .%s", c.CType, p.Type)
	}
	return ""
}
