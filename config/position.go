package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// positions maps a dotted key to the line (1-based) where the file sets it.
// Keys inside [[array]] tables appear twice: with the element index
// ("route.1.to") and without it ("route.to", the first such line).
//
// The toml package keeps key positions private, so this is a line scanner
// for the subset of TOML that config files use: table headers, array-table
// headers and `key = value` lines, skipping multi-line strings and arrays.
type positions map[string]int

func keyLines(src string) positions {
	p := positions{}
	var prefix, plain string
	count := map[string]int{}
	var inString string // the closing delimiter of an open multi-line string
	depth := 0          // open [ of a multi-line array value
	for i, line := range strings.Split(src, "\n") {
		n := i + 1
		if inString != "" {
			if strings.Contains(line, inString) {
				inString = ""
			}
			continue
		}
		code := strings.TrimSpace(stripComment(line))
		if depth > 0 {
			depth += bracketDelta(code)
			continue
		}
		switch {
		case code == "":
		case strings.HasPrefix(code, "[["):
			name := tableName(strings.TrimSuffix(strings.TrimPrefix(code, "[["), "]]"))
			idx := count[name]
			count[name]++
			prefix = name + "." + strconv.Itoa(idx)
			plain = name
			p.set(prefix, n)
			p.set(name, n)
		case strings.HasPrefix(code, "["):
			name := tableName(strings.TrimSuffix(strings.TrimPrefix(code, "["), "]"))
			prefix, plain = name, name
			p.set(name, n)
		default:
			eq := strings.Index(code, "=")
			if eq < 0 {
				continue
			}
			key := tableName(code[:eq])
			p.set(join(prefix, key), n)
			p.set(join(plain, key), n)
			val := strings.TrimSpace(code[eq+1:])
			for _, d := range []string{`"""`, `'''`} {
				if strings.HasPrefix(val, d) && !strings.Contains(val[3:], d) {
					inString = d
				}
			}
			if strings.HasPrefix(val, "[") {
				depth = bracketDelta(val)
			}
		}
	}
	return p
}

func (p positions) set(k string, line int) {
	if _, ok := p[k]; !ok {
		p[k] = line
	}
}

// find returns the line of key k, or of its nearest enclosing table, or 0.
func (p positions) find(k toml.Key) int {
	for n := len(k); n > 0; n-- {
		if l, ok := p[strings.Join(k[:n], ".")]; ok {
			return l
		}
	}
	return 0
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// tableName normalises `a . "b"` to `a.b`.
func tableName(s string) string {
	parts := strings.Split(s, ".")
	for i, part := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(part), `"'`)
	}
	return strings.Join(parts, ".")
}

// stripComment drops a # comment that is not inside a quoted string.
func stripComment(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return line[:i]
		}
	}
	return line
}

// bracketDelta counts [ minus ] outside quoted strings.
func bracketDelta(s string) int {
	d := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			d++
		case c == ']':
			d--
		}
	}
	return d
}
