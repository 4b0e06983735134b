package target

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"testing"
)

// TestForwarderDLL reads the DLL back with debug/pe and walks its export
// table as a loader does.
func TestForwarderDLL(t *testing.T) {
	fwd := map[string]string{"ProcessPrng": "advapi32.SystemFunction036", "Another": "kernel32.Sleep"}
	img := forwarderDLL("bcryptprimitives.dll", fwd)
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || f.Characteristics&pe.IMAGE_FILE_DLL == 0 {
		t.Fatalf("machine %#x, characteristics %#x; want an AMD64 DLL", f.Machine, f.Characteristics)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		t.Fatalf("optional header %T, want PE32+", f.OptionalHeader)
	}
	dir := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_EXPORT]
	if len(f.Sections) != 1 {
		t.Fatalf("%d sections", len(f.Sections))
	}
	sec := f.Sections[0]
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	at := func(rva uint32) []byte { return data[rva-sec.VirtualAddress:] }
	cstr := func(rva uint32) string { b := at(rva); return string(b[:bytes.IndexByte(b, 0)]) }
	ed := at(dir.VirtualAddress)
	if got := cstr(le.Uint32(ed[12:])); got != "bcryptprimitives.dll" {
		t.Errorf("name %q", got)
	}
	n := le.Uint32(ed[24:])
	funcs, names, ords := at(le.Uint32(ed[28:])), at(le.Uint32(ed[32:])), at(le.Uint32(ed[36:]))
	got := map[string]string{}
	prev := ""
	for i := uint32(0); i < n; i++ {
		name := cstr(le.Uint32(names[4*i:]))
		if name <= prev {
			t.Errorf("names not sorted: %q after %q", name, prev)
		}
		prev = name
		rva := le.Uint32(funcs[4*uint32(le.Uint16(ords[2*i:])):])
		if rva < dir.VirtualAddress || rva >= dir.VirtualAddress+dir.Size {
			t.Errorf("%s: address %#x is outside the export directory, so not a forwarder", name, rva)
		}
		got[name] = cstr(rva)
	}
	if len(got) != len(fwd) {
		t.Fatalf("exports %v, want %v", got, fwd)
	}
	for k, v := range fwd {
		if got[k] != v {
			t.Errorf("%s forwards to %q, want %q", k, got[k], v)
		}
	}
}
