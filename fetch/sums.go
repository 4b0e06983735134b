package fetch

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// hexLen is the length of a hash in hex, by algorithm.
var hexLen = map[string]int{"sha256": 64, "sha512": 128}

// ParseSums finds the hash of file in a checksum file of format f and algorithm
// hash, and returns it in lower-case hex. The file is matched by name, and in GNU
// files also by its last path element ("images/openbsd-min.qcow2"); a name listed
// twice with different hashes is an error, as is a malformed line naming file.
// Errors name the line.
func ParseSums(f SumsFormat, hash string, data []byte, file string) (string, error) {
	want, ok := hexLen[hash]
	if !ok {
		return "", fmt.Errorf("unknown hash %q", hash)
	}
	checkHex := func(lineNo int, h string) (string, error) {
		h = strings.ToLower(h)
		if len(h) != want || strings.Trim(h, "0123456789abcdef") != "" {
			return "", fmt.Errorf("line %d: %q is not a %s in hex (%d digits)", lineNo, h, hash, want)
		}
		return h, nil
	}
	if f == BareSums {
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			return "", fmt.Errorf("line 1: empty checksum file")
		}
		// "hex" alone, or "hex  name" as some write it: then the name must be file's.
		if len(fields) > 1 && path.Base(strings.TrimPrefix(fields[1], "*")) != file {
			return "", fmt.Errorf("line 1: the hash is of %q, not %q", fields[1], file)
		}
		return checkHex(1, fields[0])
	}
	var found string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var name, sum string
		switch f {
		case BSDSums:
			// SHA256 (FreeBSD-14.3-RELEASE-amd64-BASIC-CLOUDINIT-ufs.qcow2.xz) = 3f...
			algo, rest, ok := strings.Cut(line, " (")
			if !ok {
				return "", fmt.Errorf("line %d: %q is not \"ALGO (file) = hash\"", lineNo, line)
			}
			if !strings.EqualFold(algo, hash) {
				continue // another algorithm's line (CHECKSUM files hold one each)
			}
			i := strings.LastIndex(rest, ") = ")
			if i < 0 {
				return "", fmt.Errorf("line %d: %q is not \"ALGO (file) = hash\"", lineNo, line)
			}
			name, sum = rest[:i], strings.TrimSpace(rest[i+4:])
		case GNUSums:
			// hex  name, or hex *name (binary mode); the name may hold spaces.
			i := strings.IndexAny(line, " \t")
			if i < 0 {
				return "", fmt.Errorf("line %d: %q is not \"hash  file\"", lineNo, line)
			}
			sum, name = line[:i], strings.TrimLeft(line[i:], " \t")
			name = strings.TrimPrefix(name, "*")
		default:
			return "", fmt.Errorf("unknown checksum file format %q", f)
		}
		if name != file && !(f == GNUSums && path.Base(name) == file) {
			continue
		}
		h, err := checkHex(lineNo, sum)
		if err != nil {
			return "", err
		}
		if found != "" && found != h {
			return "", fmt.Errorf("line %d: %s is listed again with another hash", lineNo, file)
		}
		found = h
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("no %s line for %s", hash, file)
	}
	return found, nil
}
