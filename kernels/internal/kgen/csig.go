package kgen

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Param is one kernel parameter as declared in C and as passed from Go.
type Param struct {
	Name    string // C name, e.g. "dst_c"
	GoName  string // Go parameter name, e.g. "dstC"
	CType   string // C type as written, normalised spacing, e.g. "const float* __restrict__"
	GoType  string // Go type of the launcher argument, e.g. "cu.DevicePtr"
	Size    int    // bytes the kernel reads for it (the PTX .param width)
	Pointer bool   // a device pointer (any element type)
	Float   bool   // float or double (PTX .f32/.f64)
	Signed  bool   // a signed integer
}

// Kernel is one extern "C" __global__ function definition.
type Kernel struct {
	Name   string // C (and PTX .entry) name, e.g. "fill_f32"
	GoName string // launcher name, e.g. "FillF32"
	File   string // source file base name, e.g. "fill.cu"
	Module string // PTX module name: File without ".cu"
	Line   int    // line of the kernel's name
	Doc    string // the comment directly above the definition, if any
	Params []Param
}

// Signature renders the C prototype, e.g.
// "fill_f32(float* dst, long long n, float v)".
func (k Kernel) Signature() string {
	parts := make([]string, len(k.Params))
	for i, p := range k.Params {
		parts[i] = p.CType + " " + p.Name
	}
	return k.Name + "(" + strings.Join(parts, ", ") + ")"
}

// token is one lexical token of CUDA C++ source.
type token struct {
	text string
	line int
	str  bool // a string or character literal (text includes the quotes)
}

// comment is a comment block (consecutive whole-line // comments merged)
// ending at endLine, kept to document the declaration on the next line.
type comment struct {
	endLine    int
	text       string
	lineStyle  bool // a run of // lines (which may grow)
	standalone bool // nothing but space before it on its first line
}

// lexError is a lexical error at a line.
type lexError struct {
	line int
	msg  string
}

func (e *lexError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// lex splits src into tokens, dropping comments and preprocessor lines.
// Identifiers, numbers and literals are single tokens; every other
// non-space character is a one-character token, which is all the
// declaration-level parsing below needs.
func lex(src string) ([]token, []comment, error) {
	var toks []token
	var comments []comment
	line := 1
	atLineStart := true
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			atLineStart = true
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n': // line splice
			line++
			i += 2
			continue
		case c == '#' && atLineStart: // preprocessor directive, with continuations
			for i < len(src) && src[i] != '\n' {
				if src[i] == '\\' && i+1 < len(src) && src[i+1] == '\n' {
					line++
					i += 2
					continue
				}
				if src[i] == '/' && i+1 < len(src) && src[i+1] == '*' {
					end := strings.Index(src[i+2:], "*/")
					if end < 0 {
						return nil, nil, &lexError{line, "unterminated /* comment"}
					}
					line += strings.Count(src[i:i+2+end+2], "\n")
					i += 2 + end + 2
					continue
				}
				i++
			}
			continue
		}
		atLineStart = false
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				end = len(src) - i
			}
			text := strings.TrimPrefix(strings.TrimPrefix(src[i:i+end], "//"), " ")
			text = strings.TrimRight(text, " \t\r")
			alone := isLineComment(src, i)
			if n := len(comments); n > 0 && alone && comments[n-1].lineStyle && comments[n-1].standalone && comments[n-1].endLine == line-1 {
				comments[n-1].text += "\n" + text
				comments[n-1].endLine = line
			} else {
				comments = append(comments, comment{endLine: line, text: text, lineStyle: true, standalone: alone})
			}
			i += end
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, nil, &lexError{line, "unterminated /* comment"}
			}
			body := src[i+2 : i+2+end]
			alone := isLineComment(src, i)
			line += strings.Count(body, "\n")
			comments = append(comments, comment{endLine: line, text: blockCommentText(body), standalone: alone})
			i += 2 + end + 2
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				if j < len(src) && src[j] == '\n' {
					return nil, nil, &lexError{line, "unterminated literal"}
				}
				j++
			}
			if j >= len(src) {
				return nil, nil, &lexError{line, "unterminated literal"}
			}
			toks = append(toks, token{src[i : j+1], line, true})
			i = j + 1
		case c == '_' || unicode.IsLetter(rune(c)) || (c >= '0' && c <= '9'):
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' && c >= '0' && c <= '9' ||
				unicode.IsLetter(rune(src[j])) || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{src[i:j], line, false})
			i = j
		default:
			toks = append(toks, token{string(c), line, false})
			i++
		}
	}
	return toks, comments, nil
}

// isLineComment reports whether the comment at src[i] is the first thing on
// its line: only such comments document the next declaration.
func isLineComment(src string, i int) bool {
	for j := i - 1; j >= 0 && src[j] != '\n'; j-- {
		if src[j] != ' ' && src[j] != '\t' {
			return false
		}
	}
	return true
}

// blockCommentText strips the decoration of a /* */ comment body.
func blockCommentText(body string) string {
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(l, "*")
		if len(l) > 0 && l[0] == ' ' {
			l = l[1:]
		}
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// ParseError locates a problem in a CUDA source.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// scope kinds on the brace stack.
const (
	scopeExternC = iota
	scopeNamespace
	scopeOther
)

// ParseSource returns the extern "C" __global__ function definitions of one
// .cu file (file is its base name, used in errors and metadata), in source
// order. Templates, prototypes and kernels inside function or class bodies
// are skipped; a non-template __global__ definition without C linkage is an
// error, since its mangled name could not be launched by name.
func ParseSource(file, src string) ([]Kernel, error) {
	toks, comments, err := lex(src)
	if err != nil {
		le := err.(*lexError)
		return nil, &ParseError{file, le.line, le.msg}
	}
	p := &parser{file: file, toks: toks, comments: comments}
	return p.parse()
}

type parser struct {
	file     string
	toks     []token
	comments []comment
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &ParseError{p.file, line, fmt.Sprintf(format, args...)}
}

func (p *parser) parse() ([]Kernel, error) {
	var kernels []Kernel
	var stack []int
	seen := map[string]int{}
	start := 0 // first token of the current declaration
	for i := 0; i < len(p.toks); i++ {
		t := p.toks[i]
		if t.str {
			continue
		}
		switch t.text {
		case ";":
			start = i + 1
		case "}":
			if len(stack) == 0 {
				return nil, p.errorf(t.line, "unbalanced '}'")
			}
			stack = stack[:len(stack)-1]
			start = i + 1
		case "(", "[":
			// Skip balanced groups so that '{' inside attributes or
			// initialisers does not confuse the scan.
			j, err := p.skipGroup(i)
			if err != nil {
				return nil, err
			}
			i = j
		case "{":
			decl := p.toks[start:i]
			kind := classify(decl)
			if kind == scopeOther {
				// A function body, class or initialiser: a kernel
				// definition is recorded, then the whole body skipped.
				if k, ok, err := p.kernel(decl, inExternC(stack)); err != nil {
					return nil, err
				} else if ok {
					if prev, dup := seen[k.Name]; dup {
						return nil, p.errorf(k.Line, "kernel %s defined twice (first at line %d)", k.Name, prev)
					}
					seen[k.Name] = k.Line
					kernels = append(kernels, k)
				}
				j, err := p.skipGroup(i)
				if err != nil {
					return nil, err
				}
				i = j
				start = i + 1
				continue
			}
			stack = append(stack, kind)
			start = i + 1
		}
	}
	if len(stack) != 0 {
		return nil, p.errorf(p.toks[len(p.toks)-1].line, "unbalanced '{'")
	}
	return kernels, nil
}

// skipGroup returns the index of the bracket closing the one at i.
func (p *parser) skipGroup(i int) (int, error) {
	open := p.toks[i].text
	close := map[string]string{"(": ")", "[": "]", "{": "}"}[open]
	depth := 0
	for j := i; j < len(p.toks); j++ {
		if p.toks[j].str {
			continue
		}
		switch p.toks[j].text {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, p.errorf(p.toks[i].line, "unbalanced '%s'", open)
}

// classify tells what the '{' after decl opens.
func classify(decl []token) int {
	if len(decl) == 2 && decl[0].text == "extern" && decl[1].str && decl[1].text == `"C"` {
		return scopeExternC
	}
	if len(decl) >= 1 && decl[0].text == "namespace" {
		return scopeNamespace
	}
	return scopeOther
}

func inExternC(stack []int) bool {
	for _, k := range stack {
		if k == scopeOther {
			return false
		}
	}
	for _, k := range stack {
		if k == scopeExternC {
			return true
		}
	}
	return false
}

// kernel parses decl (the tokens before a '{') as a kernel definition; ok
// is false when it is something else.
func (p *parser) kernel(decl []token, externC bool) (Kernel, bool, error) {
	global := -1
	for i, t := range decl {
		if !t.str && t.text == "__global__" {
			global = i
			break
		}
	}
	if global < 0 {
		return Kernel{}, false, nil
	}
	if decl[0].text == "template" {
		return Kernel{}, false, nil // instantiated and exported via extern "C" wrappers
	}
	rest := decl
	if len(rest) >= 2 && rest[0].text == "extern" && rest[1].str {
		if rest[1].text != `"C"` {
			return Kernel{}, false, p.errorf(rest[0].line, "unsupported linkage %s", rest[1].text)
		}
		externC = true
		rest = rest[2:]
	}
	// Find the kernel name: the identifier before the first '(' that does
	// not belong to an attribute.
	var spec []token
	nameIdx := -1
	for i := 0; i < len(rest); i++ {
		t := rest[i]
		if t.text == "__launch_bounds__" || t.text == "__attribute__" || t.text == "__declspec" {
			if i+1 >= len(rest) || rest[i+1].text != "(" {
				return Kernel{}, false, p.errorf(t.line, "%s without arguments", t.text)
			}
			j, err := skipIn(rest, i+1)
			if err != nil {
				return Kernel{}, false, p.errorf(t.line, "unbalanced %s(", t.text)
			}
			i = j
			continue
		}
		if t.text == "(" {
			nameIdx = i - 1
			break
		}
		spec = append(spec, t)
	}
	if nameIdx < 0 || len(spec) == 0 || !isIdent(rest[nameIdx].text) {
		return Kernel{}, false, p.errorf(decl[global].line, "cannot find the kernel name in this __global__ declaration")
	}
	name := rest[nameIdx]
	spec = spec[:len(spec)-1]
	if !externC {
		return Kernel{}, false, p.errorf(name.line, "kernel %s is not extern \"C\": its PTX name would be mangled and no launcher could find it", name.text)
	}
	hasVoid := false
	for _, t := range spec {
		switch t.text {
		case "void":
			hasVoid = true
		case "__global__", "static", "inline", "__forceinline__", "__noinline__":
		default:
			return Kernel{}, false, p.errorf(t.line, "kernel %s: unexpected %q before the name", name.text, t.text)
		}
	}
	if !hasVoid {
		return Kernel{}, false, p.errorf(name.line, "kernel %s must return void", name.text)
	}
	closeIdx, err := skipIn(rest, nameIdx+1)
	if err != nil {
		return Kernel{}, false, p.errorf(name.line, "kernel %s: unbalanced parameter list", name.text)
	}
	if closeIdx != len(rest)-1 {
		return Kernel{}, false, p.errorf(rest[closeIdx+1].line, "kernel %s: unexpected %q after the parameter list", name.text, rest[closeIdx+1].text)
	}
	params, err := p.params(name.text, rest[nameIdx+2:closeIdx], name.line)
	if err != nil {
		return Kernel{}, false, err
	}
	k := Kernel{
		Name:   name.text,
		GoName: exportedName(name.text),
		File:   p.file,
		Module: strings.TrimSuffix(p.file, ".cu"),
		Line:   name.line,
		Doc:    p.docFor(decl[0].line),
		Params: params,
	}
	if k.GoName == "" {
		return Kernel{}, false, p.errorf(name.line, "kernel name %s gives no Go identifier", name.text)
	}
	return k, true, nil
}

// skipIn returns the index of the bracket closing toks[i].
func skipIn(toks []token, i int) (int, error) {
	open := toks[i].text
	close := map[string]string{"(": ")", "[": "]", "{": "}", "<": ">"}[open]
	depth := 0
	for j := i; j < len(toks); j++ {
		if toks[j].str {
			continue
		}
		switch toks[j].text {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced %s", open)
}

// docFor returns the comment ending on the line before line.
func (p *parser) docFor(line int) string {
	for _, c := range p.comments {
		if c.endLine == line-1 && c.standalone {
			return strings.TrimSpace(c.text)
		}
	}
	return ""
}

// params parses a parameter list.
func (p *parser) params(kernel string, toks []token, line int) ([]Param, error) {
	if len(toks) == 0 || len(toks) == 1 && toks[0].text == "void" {
		return nil, nil
	}
	var groups [][]token
	depth, from := 0, 0
	for i, t := range toks {
		switch t.text {
		case "(", "[", "<":
			depth++
		case ")", "]", ">":
			depth--
		case ",":
			if depth == 0 {
				groups = append(groups, toks[from:i])
				from = i + 1
			}
		}
	}
	groups = append(groups, toks[from:])
	var out []Param
	var lines []int
	names := map[string]bool{}
	lowered := map[string]int{}
	for i, g := range groups {
		at := line
		if len(g) > 0 {
			at = g[0].line
		}
		prm, err := parseParam(g)
		if err != nil {
			return nil, p.errorf(at, "kernel %s, parameter %d: %v", kernel, i+1, err)
		}
		if names[prm.Name] {
			return nil, p.errorf(at, "kernel %s: duplicate parameter name %s", kernel, prm.Name)
		}
		names[prm.Name] = true
		lowered[prm.GoName]++
		out = append(out, prm)
		lines = append(lines, at)
	}
	// Names that differ only in the case of their first letter (w for
	// weights, W for width) keep their C case, so neither depends on the
	// other's position.
	goNames := map[string]bool{}
	for i := range out {
		if lowered[out[i].GoName] > 1 {
			out[i].GoName = goParamNameKeepCase(out[i].Name)
		}
		if goNames[out[i].GoName] {
			return nil, p.errorf(lines[i], "kernel %s: parameters map to the same Go name %s", kernel, out[i].GoName)
		}
		goNames[out[i].GoName] = true
	}
	return out, nil
}

// qualifiers are dropped from the type before mapping it.
var qualifiers = map[string]bool{"const": true, "volatile": true, "__restrict__": true, "__restrict": true, "restrict": true}

// baseTypes maps a canonical C scalar type (its words sorted) to its Go type.
var baseTypes = map[string]struct {
	goType string
	size   int
	float  bool
	signed bool
}{
	"float":                  {"float32", 4, true, true},
	"double":                 {"float64", 8, true, true},
	"int":                    {"int32", 4, false, true},
	"signed":                 {"int32", 4, false, true},
	"int signed":             {"int32", 4, false, true},
	"int32_t":                {"int32", 4, false, true},
	"unsigned":               {"uint32", 4, false, false},
	"int unsigned":           {"uint32", 4, false, false},
	"uint32_t":               {"uint32", 4, false, false},
	"long long":              {"int64", 8, false, true},
	"int long long":          {"int64", 8, false, true},
	"long long signed":       {"int64", 8, false, true},
	"int long long signed":   {"int64", 8, false, true},
	"long":                   {"int64", 8, false, true}, // LP64: the device uses the host's data model
	"int long":               {"int64", 8, false, true},
	"int64_t":                {"int64", 8, false, true},
	"ptrdiff_t":              {"int64", 8, false, true},
	"long long unsigned":     {"uint64", 8, false, false},
	"int long long unsigned": {"uint64", 8, false, false},
	"long unsigned":          {"uint64", 8, false, false},
	"int long unsigned":      {"uint64", 8, false, false},
	"size_t":                 {"uint64", 8, false, false},
	"uint64_t":               {"uint64", 8, false, false},
}

// parseParam maps one parameter's tokens to a Param.
func parseParam(toks []token) (Param, error) {
	if len(toks) == 0 {
		return Param{}, fmt.Errorf("empty parameter")
	}
	for _, t := range toks {
		switch t.text {
		case "=":
			return Param{}, fmt.Errorf("default arguments are not supported")
		case "&":
			return Param{}, fmt.Errorf("reference parameters are not supported (pass a pointer)")
		case "<", ">", ":":
			return Param{}, fmt.Errorf("template or qualified types are not supported")
		case "(", ")":
			return Param{}, fmt.Errorf("function-pointer parameters are not supported")
		case ".":
			return Param{}, fmt.Errorf("variadic kernels are not supported")
		}
		if t.str {
			return Param{}, fmt.Errorf("unexpected literal %s", t.text)
		}
	}
	// Arrays decay to pointers: "float x[]" or "float x[4]".
	pointers := 0
	arrayDecayed := false
	if i := indexTok(toks, "["); i >= 0 {
		pointers++
		arrayDecayed = true
		toks = toks[:i]
	}
	last := toks[len(toks)-1]
	if !isIdent(last.text) || qualifiers[last.text] || isTypeWord(last.text) {
		return Param{}, fmt.Errorf("parameter has no name (the launcher needs one): %s", joinType(toks))
	}
	name := last.text
	typeToks := toks[:len(toks)-1]
	var words []string
	for _, t := range typeToks {
		switch {
		case t.text == "*":
			pointers++
		case qualifiers[t.text]:
		case isIdent(t.text):
			words = append(words, t.text)
		default:
			return Param{}, fmt.Errorf("unexpected %q in the type of %s", t.text, name)
		}
	}
	if len(words) == 0 {
		return Param{}, fmt.Errorf("parameter %s has no type", name)
	}
	prm := Param{Name: name, GoName: goParamName(name), CType: joinType(typeToks)}
	if arrayDecayed {
		prm.CType += "*" // show the decayed type the kernel really receives
	}
	if pointers > 0 {
		prm.GoType, prm.Size, prm.Pointer = "cu.DevicePtr", 8, true
		return prm, nil
	}
	sorted := append([]string(nil), words...)
	sort.Strings(sorted)
	bt, ok := baseTypes[strings.Join(sorted, " ")]
	if !ok {
		return Param{}, fmt.Errorf("unsupported type %q for %s (supported: pointers, int, unsigned, long long, unsigned long long, size_t, int32_t, uint32_t, int64_t, uint64_t, float, double)", prm.CType, name)
	}
	prm.GoType, prm.Size, prm.Float, prm.Signed = bt.goType, bt.size, bt.float, bt.signed
	return prm, nil
}

func indexTok(toks []token, s string) int {
	for i, t := range toks {
		if t.text == s {
			return i
		}
	}
	return -1
}

// isTypeWord reports C type keywords that cannot be a parameter's name.
func isTypeWord(s string) bool {
	switch s {
	case "void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "bool",
		"size_t", "ptrdiff_t", "int32_t", "uint32_t", "int64_t", "uint64_t", "int8_t", "uint8_t", "int16_t", "uint16_t",
		"half", "__half", "__nv_bfloat16":
		return true
	}
	return false
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// joinType renders type tokens with '*' attached to the word before it.
func joinType(toks []token) string {
	var b strings.Builder
	for _, t := range toks {
		if t.text != "*" && b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
	}
	return b.String()
}

// exportedName converts snake_case to an exported Go name: fill_f32 → FillF32.
func exportedName(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	out := b.String()
	if out != "" && !unicode.IsLetter(rune(out[0])) {
		out = "K" + out
	}
	return out
}

// reservedGoNames cannot be launcher parameter names: Go keywords and the
// names the launcher itself uses.
var reservedGoNames = map[string]bool{
	"break": true, "case": true, "chan": true, "const": true, "continue": true, "default": true,
	"defer": true, "else": true, "fallthrough": true, "for": true, "func": true, "go": true, "goto": true,
	"if": true, "import": true, "interface": true, "map": true, "package": true, "range": true,
	"return": true, "select": true, "struct": true, "switch": true, "type": true, "var": true,
	"k": true, "stream": true, "grid": true, "block": true, "shmem": true, "cu": true,
}

// goParamName converts snake_case to lowerCamel: dst_off → dstOff.
func goParamName(s string) string { return camel(s, true) }

// goParamNameKeepCase is goParamName without lowering the first letter.
func goParamNameKeepCase(s string) string { return camel(s, false) }

func camel(s string, lowerFirst bool) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part == "" {
			continue
		}
		switch {
		case b.Len() > 0:
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		case lowerFirst:
			b.WriteString(strings.ToLower(part[:1]) + part[1:])
		default:
			b.WriteString(part)
		}
	}
	out := b.String()
	if out == "" || reservedGoNames[out] {
		out += "Arg"
	}
	return out
}
