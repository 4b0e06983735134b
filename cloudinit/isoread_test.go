package cloudinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// This file reads ISO 9660 images back the way a guest's kernel does, written from
// ECMA-119 (volume descriptors, directory records), Joliet (a supplementary
// descriptor with UCS-2 names) and Rock Ridge (RRIP "NM" entries in the System Use
// area, SUSP-framed): independent of libisofs, which wrote the image. A kernel module
// cannot be loaded where lab is developed, so the seed cannot be loop-mounted there;
// the boot test mounts it with a real Linux kernel.

const isoSector = 2048

// isoNames says which of an image's three name spaces to read.
type isoNames int

const (
	plainNames isoNames = iota // ECMA-119 names: "USER_DAT.;1"
	rockRidge                  // the primary tree, names from RRIP NM entries
	joliet                     // the supplementary tree's UCS-2 names
)

// isoVolume is what readISO found.
type isoVolume struct {
	label string            // the primary descriptor's volume identifier
	files map[string]string // root directory: name -> content
}

// readISO reads the root directory of image under names.
func readISO(image []byte, names isoNames) (*isoVolume, error) {
	sector := func(n int) ([]byte, error) {
		if n < 0 || (n+1)*isoSector > len(image) {
			return nil, fmt.Errorf("sector %d is beyond the image (%d bytes)", n, len(image))
		}
		return image[n*isoSector : (n+1)*isoSector], nil
	}
	var pvd, svd []byte
	for n := 16; ; n++ {
		d, err := sector(n)
		if err != nil {
			return nil, fmt.Errorf("volume descriptors: %w", err)
		}
		if string(d[1:6]) != "CD001" {
			return nil, fmt.Errorf("sector %d: no CD001 signature", n)
		}
		switch d[0] {
		case 1:
			pvd = d
		case 2:
			// Joliet's escape sequences for UCS-2 levels 1-3.
			if esc := string(d[88:91]); esc == "%/@" || esc == "%/C" || esc == "%/E" {
				svd = d
			}
		case 255:
			goto done
		}
		if n > 64 {
			return nil, errors.New("no volume descriptor set terminator")
		}
	}
done:
	if pvd == nil {
		return nil, errors.New("no primary volume descriptor")
	}
	v := &isoVolume{label: strings.TrimRight(string(pvd[40:72]), " "), files: map[string]string{}}
	desc := pvd
	if names == joliet {
		if svd == nil {
			return nil, errors.New("no Joliet descriptor")
		}
		desc = svd
	}
	root := desc[156 : 156+34]
	extent, size := int(binary.LittleEndian.Uint32(root[2:])), int(binary.LittleEndian.Uint32(root[10:]))
	if size > 1<<20 || extent*isoSector+size > len(image) || extent < 0 {
		return nil, fmt.Errorf("root directory extent %d size %d is beyond the image", extent, size)
	}
	dir := image[extent*isoSector : extent*isoSector+size]
	for off := 0; off < len(dir); {
		l := int(dir[off])
		if l == 0 {
			// Records do not cross sectors; the rest of this one is padding.
			off = (off/isoSector + 1) * isoSector
			continue
		}
		if l < 34 || off+l > len(dir) {
			return nil, fmt.Errorf("directory record at %d: length %d", off, l)
		}
		rec := dir[off : off+l]
		off += l
		nameLen := int(rec[32])
		if 33+nameLen > l {
			return nil, fmt.Errorf("directory record name of %d bytes in a %d-byte record", nameLen, l)
		}
		raw := rec[33 : 33+nameLen]
		if nameLen == 1 && (raw[0] == 0 || raw[0] == 1) {
			continue // . and ..
		}
		if rec[25]&2 != 0 {
			continue // a subdirectory; seeds have none
		}
		var name string
		switch names {
		case plainNames:
			name = string(raw)
		case joliet:
			if nameLen%2 != 0 {
				return nil, fmt.Errorf("Joliet name of odd length %d", nameLen)
			}
			u := make([]uint16, nameLen/2)
			for i := range u {
				u[i] = binary.BigEndian.Uint16(raw[2*i:])
			}
			name, _, _ = strings.Cut(string(utf16.Decode(u)), ";")
		case rockRidge:
			start := 33 + nameLen + (1 - nameLen%2) // the name is padded to an even offset
			if start > l {
				return nil, fmt.Errorf("file %q: no System Use area", raw)
			}
			su := rec[start:]
			nm, err := rockRidgeName(su)
			if err != nil {
				return nil, fmt.Errorf("file %q: %w", raw, err)
			}
			name = nm
		}
		fext, fsize := int(binary.LittleEndian.Uint32(rec[2:])), int(binary.LittleEndian.Uint32(rec[10:]))
		if fext < 0 || fsize < 0 || fext*isoSector+fsize > len(image) {
			return nil, fmt.Errorf("file %q: extent %d size %d beyond the image", name, fext, fsize)
		}
		v.files[name] = string(image[fext*isoSector : fext*isoSector+fsize])
	}
	return v, nil
}

// rockRidgeName returns the name in a System Use area's NM entries (SUSP entries:
// two signature bytes, length, version, data), which may be split over several.
func rockRidgeName(su []byte) (string, error) {
	var name strings.Builder
	found := false
	for len(su) >= 4 {
		sig, l := string(su[:2]), int(su[2])
		if l < 4 || l > len(su) {
			break // padding or the end
		}
		if sig == "NM" && l >= 5 {
			found = true
			name.Write(su[5:l])
		}
		if sig == "ST" {
			break
		}
		su = su[l:]
	}
	if !found {
		return "", errors.New("no Rock Ridge NM entry")
	}
	return name.String(), nil
}

func FuzzReadISO(f *testing.F) {
	f.Add(make([]byte, 20*isoSector))
	// A real seed, so that mutations start from records the reader understands.
	path := filepath.Join(f.TempDir(), "seed.iso")
	if _, err := Write(path, []File{{"user-data", "#cloud-config\n"}, {"meta-data", "instance-id: x\n"}}, ISO9660); err == nil {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		for _, n := range []isoNames{plainNames, rockRidge, joliet} {
			readISO(image, n) // must not panic or hang
		}
	})
}
