package qemu

import (
	"fmt"

	"lab/cloudinit"
)

// MakeNoCloudSeed writes a cloud-init NoCloud seed image to path: a filesystem labelled
// "cidata" holding user-data, meta-data and, if networkConfig is not empty,
// network-config. It is package cloudinit's writer (ISO 9660 made by xorriso or
// genisoimage, vfat only where neither is installed), kept for callers that write their
// own user-data; cloudinit.WriteSeed writes the seed lab's guests need, per OS.
func MakeNoCloudSeed(path, userData, metaData, networkConfig string) error {
	files := []cloudinit.File{{Name: "user-data", Data: userData}, {Name: "meta-data", Data: metaData}}
	if networkConfig != "" {
		files = append(files, cloudinit.File{Name: "network-config", Data: networkConfig})
	}
	if _, err := cloudinit.Write(path, files); err != nil {
		return fmt.Errorf("qemu: making NoCloud seed: %w", err)
	}
	return nil
}
