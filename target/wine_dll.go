package target

import (
	"encoding/binary"
	"sort"
)

// forwarderDLL builds a PE32+ DLL for x86-64 that holds nothing but an
// export table whose entries forward to functions of other DLLs
// ("advapi32.SystemFunction036"): Windows's and Wine's loaders resolve such
// an export to its target, so the DLL has no code. Its exports are sorted
// by name, as the loader's binary search needs.
func forwarderDLL(name string, forwards map[string]string) []byte {
	const (
		fileAlign    = 0x200
		sectAlign    = 0x1000
		sectRVA      = sectAlign
		exportDirLen = 40
		optHeaderLen = 112 + 16*8 // PE32+ fields, then 16 data directories
	)
	le := binary.LittleEndian
	names := make([]string, 0, len(forwards))
	for n := range forwards {
		names = append(names, n)
	}
	sort.Strings(names)
	n := len(names)

	// The .rdata section: export directory, address table, name pointers,
	// ordinals, then the strings. An address inside the export directory's
	// range is a forwarder string, which is how the loader tells them apart.
	eat := exportDirLen
	namePtrs := eat + 4*n
	ordinals := namePtrs + 4*n
	sec := make([]byte, ordinals+2*n)
	addString := func(s string) uint32 {
		rva := uint32(sectRVA + len(sec))
		sec = append(append(sec, s...), 0)
		return rva
	}
	// addString may move sec, so each address is taken before the store.
	nameRVA := addString(name)
	le.PutUint32(sec[12:], nameRVA)   // Name
	le.PutUint32(sec[16:], 1)         // Base: ordinals start at 1
	le.PutUint32(sec[20:], uint32(n)) // NumberOfFunctions
	le.PutUint32(sec[24:], uint32(n)) // NumberOfNames
	le.PutUint32(sec[28:], uint32(sectRVA+eat))
	le.PutUint32(sec[32:], uint32(sectRVA+namePtrs))
	le.PutUint32(sec[36:], uint32(sectRVA+ordinals))
	for i, fn := range names {
		fnRVA := addString(fn)
		fwdRVA := addString(forwards[fn])
		le.PutUint32(sec[namePtrs+4*i:], fnRVA)
		le.PutUint16(sec[ordinals+2*i:], uint16(i))
		le.PutUint32(sec[eat+4*i:], fwdRVA)
	}
	rawLen := (len(sec) + fileAlign - 1) &^ (fileAlign - 1)

	img := make([]byte, fileAlign+rawLen)
	copy(img, "MZ")
	le.PutUint32(img[0x3c:], 0x40) // e_lfanew
	copy(img[0x40:], "PE\x00\x00")
	coff := 0x44
	le.PutUint16(img[coff:], 0x8664) // AMD64
	le.PutUint16(img[coff+2:], 1)    // one section
	le.PutUint16(img[coff+16:], optHeaderLen)
	le.PutUint16(img[coff+18:], 0x2022) // executable image, large address aware, DLL
	opt := coff + 20
	le.PutUint16(img[opt:], 0x20b) // PE32+
	le.PutUint32(img[opt+8:], uint32(rawLen))
	le.PutUint32(img[opt+20:], sectRVA)                                               // BaseOfCode
	le.PutUint64(img[opt+24:], 0x180000000)                                           // ImageBase, the usual for 64-bit DLLs
	le.PutUint32(img[opt+32:], sectAlign)                                             // SectionAlignment
	le.PutUint32(img[opt+36:], fileAlign)                                             // FileAlignment
	le.PutUint16(img[opt+40:], 6)                                                     // OS version 6.0
	le.PutUint16(img[opt+48:], 6)                                                     // subsystem version 6.0
	le.PutUint32(img[opt+56:], uint32(sectRVA+(len(sec)+sectAlign-1)&^(sectAlign-1))) // SizeOfImage
	le.PutUint32(img[opt+60:], fileAlign)                                             // SizeOfHeaders
	le.PutUint16(img[opt+68:], 3)                                                     // console subsystem
	le.PutUint64(img[opt+72:], 0x100000)                                              // stack reserve
	le.PutUint64(img[opt+80:], 0x1000)                                                // stack commit
	le.PutUint64(img[opt+88:], 0x100000)                                              // heap reserve
	le.PutUint64(img[opt+96:], 0x1000)                                                // heap commit
	le.PutUint32(img[opt+108:], 16)                                                   // NumberOfRvaAndSizes
	le.PutUint32(img[opt+112:], sectRVA)                                              // export directory
	le.PutUint32(img[opt+116:], uint32(len(sec)))
	sh := opt + optHeaderLen
	copy(img[sh:], ".rdata")
	le.PutUint32(img[sh+8:], uint32(len(sec))) // VirtualSize
	le.PutUint32(img[sh+12:], sectRVA)
	le.PutUint32(img[sh+16:], uint32(rawLen))
	le.PutUint32(img[sh+20:], fileAlign)  // PointerToRawData
	le.PutUint32(img[sh+36:], 0x40000040) // initialized data, readable
	copy(img[fileAlign:], sec)
	return img
}
