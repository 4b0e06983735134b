// Package fetch downloads the cloud images lab boots for the operating systems
// it cannot build from Debian packages: the official image of each publisher (or,
// where a system has none, a community build, named as such), verified against the
// publisher's own checksum file in the publisher's own format before anything uses
// it, decompressed or converted to a disk QEMU boots, and kept in lab's cache, so
// that a target's disk: can name the image (Resolve) instead of a path.
//
// Downloads resume (HTTP Range, If-Range against the first response's validator)
// and show progress. xz is decompressed by xz(1) (xz-utils, which lab's setup
// installs: measured 20 times faster here than the pure-Go decoder), zstd by
// github.com/klauspost/compress/zstd (as fast as zstd(1) here, and no host
// package), and VMDK is converted with qemu-img.
package fetch

import (
	"fmt"
	"sort"
	"strings"
)

// SumsFormat is how a publisher writes its checksum file.
type SumsFormat string

const (
	// BSDSums is "SHA256 (file) = hex", one line per file: FreeBSD's CHECKSUM.SHA256.
	BSDSums SumsFormat = "bsd"
	// GNUSums is coreutils' "hex  file", or "hex *file" in binary mode: Debian's
	// SHA512SUMS, Ubuntu's SHA256SUMS, and the .sha256 files of the OpenBSD community
	// build (made by sha256sum images/openbsd-min.qcow2, so the name has a directory).
	GNUSums SumsFormat = "gnu"
	// BareSums is a file holding the hash alone: OmniOS's <image>.sha256.
	BareSums SumsFormat = "bare"
)

// Image is one catalog entry.
type Image struct {
	// Name is what lab image fetch and a target's disk: take.
	Name string
	// OS is the image's GOOS and User its default user, for a target's os: and user:.
	OS, User string
	// Publisher says who builds the image; Community marks builds by others than the
	// OS's own project.
	Publisher string
	Community bool
	// URL is the image file.
	URL string
	// Sums is the publisher's checksum file holding URL's hash, in SumsFormat and of
	// Hash ("sha256" or "sha512"); "" where the publisher has none, and the user must
	// pin the hash (Options.SHA256).
	Sums       string
	SumsFormat SumsFormat
	Hash       string
	// Compression of the file at URL: "", "xz" or "zst".
	Compression string
	// Format of the (decompressed) file: "qcow2", "raw", or "vmdk", which is converted
	// to qcow2. Ubuntu's .img is qcow2.
	Format string
	// Notes says what is known and what is not about the entry.
	Notes string
}

// catalog is every image lab knows how to fetch. URLs, names and checksum formats
// are from shared/notes/other-os-images.md and the publishers' files as quoted by
// public scripts; none could be downloaded where lab is developed (no internet).
var catalog = []Image{
	{
		Name: "freebsd-14.3", OS: "freebsd", User: "freebsd", Publisher: "The FreeBSD Project",
		URL:  "https://download.freebsd.org/releases/VM-IMAGES/14.3-RELEASE/amd64/Latest/FreeBSD-14.3-RELEASE-amd64-BASIC-CLOUDINIT-ufs.qcow2.xz",
		Sums: "https://download.freebsd.org/releases/VM-IMAGES/14.3-RELEASE/amd64/Latest/CHECKSUM.SHA256", SumsFormat: BSDSums, Hash: "sha256",
		Compression: "xz", Format: "qcow2",
		Notes: "BASIC-CLOUDINIT: nuageinit reads the seed; the checksums are of the .xz file",
	},
	{
		Name: "debian-12", OS: "linux", User: "debian", Publisher: "Debian",
		URL:  "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
		Sums: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", SumsFormat: GNUSums, Hash: "sha512",
		Format: "qcow2",
	},
	{
		Name: "ubuntu-24.04", OS: "linux", User: "ubuntu", Publisher: "Canonical",
		URL:  "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img",
		Sums: "https://cloud-images.ubuntu.com/noble/current/SHA256SUMS", SumsFormat: GNUSums, Hash: "sha256",
		Format: "qcow2",
		Notes:  "SHA256SUMS lines are \"hex *name\"; its GPG signature (SHA256SUMS.gpg) is not checked",
	},
	{
		Name: "omnios-r151054", OS: "illumos", User: "omnios", Publisher: "OmniOS",
		URL:  "https://downloads.omnios.org/media/r151054/omnios-r151054.cloud.vmdk",
		Sums: "https://downloads.omnios.org/media/r151054/omnios-r151054.cloud.vmdk.sha256", SumsFormat: BareSums, Hash: "sha256",
		Format: "vmdk",
		Notes:  "OmniOS ships .cloud.vmdk and .cloud.raw.zst, no qcow2; the .sha256 sidecar holding the bare hash is as third-party code reads it",
	},
	{
		Name: "omnios-r151054-raw", OS: "illumos", User: "omnios", Publisher: "OmniOS",
		URL:  "https://downloads.omnios.org/media/r151054/omnios-r151054.cloud.raw.zst",
		Sums: "https://downloads.omnios.org/media/r151054/omnios-r151054.cloud.raw.zst.sha256", SumsFormat: BareSums, Hash: "sha256",
		Compression: "zst", Format: "raw",
		Notes: "the raw image of omnios-r151054; that its .sha256 sidecar exists like the .vmdk's was not verified",
	},
	{
		Name: "netbsd-10.1", OS: "netbsd", User: "netbsd", Publisher: "bsd-cloud-image.org (community build)", Community: true,
		URL:    "https://object-storage.public.mtl1.vexxhost.net/swift/v1/1dbafeefbd4f4c80864414a441e72dd2/bsd-cloud-image.org/images/netbsd/10.1/2025-02-15/ufs/netbsd-10.1-2025-02-15.qcow2",
		Format: "qcow2",
		Notes:  "The NetBSD project publishes no cloud image; bsd-cloud-image.org publishes no checksums (its images_data.json lists URLs only), so the hash must be pinned with --sha256",
	},
	{
		Name: "openbsd-7.8", OS: "openbsd", User: "openbsd", Publisher: "hcartiaux/openbsd-cloud-image (community build)", Community: true,
		URL:  "https://github.com/hcartiaux/openbsd-cloud-image/releases/download/v7.8_2025-10-22-09-25/openbsd-min.qcow2",
		Sums: "https://github.com/hcartiaux/openbsd-cloud-image/releases/download/v7.8_2025-10-22-09-25/openbsd-min.qcow2.sha256", SumsFormat: GNUSums, Hash: "sha256",
		Format: "qcow2",
		Notes:  "The OpenBSD project publishes no cloud image; this build's release workflow uploads sha256sum's output beside the image",
	},
}

// Catalog returns every image lab can fetch, sorted by name.
func Catalog() []Image {
	out := append([]Image(nil), catalog...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the catalog entry called name.
func Lookup(name string) (Image, error) {
	for _, im := range catalog {
		if im.Name == name {
			return im, nil
		}
	}
	var names []string
	for _, im := range Catalog() {
		names = append(names, im.Name)
	}
	return Image{}, fmt.Errorf("fetch: no image %q in the catalog (known: %s)", name, strings.Join(names, ", "))
}

// fileName is the last element of the image's URL: the name its checksum file uses.
func (im Image) fileName() string { return im.URL[strings.LastIndexByte(im.URL, '/')+1:] }

// cachedExt is the extension of the image as the cache keeps it.
func (im Image) cachedExt() string {
	if im.Format == "raw" {
		return ".raw"
	}
	return ".qcow2"
}
