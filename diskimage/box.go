package diskimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"lab/cloudinit"

	"github.com/hashicorp/go-hclog"
)

// BoxHostKeyFile is the file in a box lab built that holds the host key of
// its machines; Vagrant unpacks it with the box, and lab pins it.
const BoxHostKeyFile = "lab_host_key.pub"

// Box is a Vagrant box lab built.
type Box struct {
	File string // the .box file
	Name string // the name to add it under
	// HostKey is the host key (authorized_keys form) of every machine
	// made from the box; the box carries it for lab to pin.
	HostKey []byte
}

// boxBuildVersion is part of a box's hash; bump it when BuildBox changes.
const boxBuildVersion = 2

// BuildBox builds a vagrant-libvirt box of Debian 12 from Debian's
// packages only, offline but for Debian's mirror: diskimage's cloud-style
// disk, and a second disk with a cloud-init NoCloud seed that makes the
// vagrant user (Vagrant's insecure key, which Vagrant replaces on the first
// up, and passwordless sudo) and installs a host key lab generated. The box
// carries that key's public half, so lab pins it. Cached in cacheDir.
func BuildBox(ctx context.Context, cacheDir string, log hclog.Logger) (*Box, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	disk, err := BuildDebianCloud(ctx, filepath.Join(cacheDir, "diskimage"), "bookworm", log)
	if err != nil {
		return nil, err
	}
	insecure, err := vagrantInsecureKeys()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, "vagrant-box")
	hostPub, hostPriv, err := KeyPair(filepath.Join(dir, "keys"), "host")
	if err != nil {
		return nil, err
	}
	seedCfg := cloudinit.Config{OS: "linux", Name: "lab-box", User: "vagrant", Shell: "/bin/bash", AuthorizedKeys: insecure,
		HostKey: cloudinit.HostKey{Private: hostPriv, Public: hostPub}}
	userData, err := seedCfg.UserData()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%s", boxBuildVersion, filepath.Base(disk), userData)))
	box := &Box{Name: "lab/debian-12", HostKey: hostPub, File: filepath.Join(dir, "lab-debian-12-"+hex.EncodeToString(sum[:8])+".box")}
	if _, err := os.Stat(box.File); err == nil {
		return box, nil
	}
	start := time.Now()
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	seedRaw := filepath.Join(work, "seed.raw")
	if _, err := cloudinit.WriteSeed(seedRaw, seedCfg); err != nil {
		return nil, err
	}
	seed := filepath.Join(work, "seed.img")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "qcow2", seedRaw, seed).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img convert: %w: %s", err, out)
	}
	// Box format 2 of vagrant-libvirt: several disks, each a qcow2.
	metadata, _ := json.Marshal(map[string]any{
		"provider": "libvirt", "format": "qcow2",
		"disks": []map[string]string{{"path": "box.img"}, {"path": "seed.img"}},
	})
	files := []struct{ name, path string }{{"box.img", disk}, {"seed.img", seed}}
	inline := []struct {
		name string
		data []byte
	}{
		{"metadata.json", metadata},
		{"Vagrantfile", []byte("# Built by lab (diskimage.BuildBox): Debian 12 from Debian's packages.\nVagrant.configure(\"2\") do |config|\nend\n")},
		{BoxHostKeyFile, hostPub},
	}
	tmp := filepath.Join(work, "box.tar")
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(f)
	for _, in := range inline {
		if err := tw.WriteHeader(&tar.Header{Name: in.name, Mode: 0o644, Size: int64(len(in.data)), ModTime: time.Now()}); err != nil {
			return nil, errors.Join(err, f.Close())
		}
		if _, err := tw.Write(in.data); err != nil {
			return nil, errors.Join(err, f.Close())
		}
	}
	for _, fl := range files {
		if err := addFileToTar(tw, fl.name, fl.path); err != nil {
			return nil, errors.Join(err, f.Close())
		}
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		return nil, fmt.Errorf("writing box: %w", err)
	}
	if err := os.Rename(tmp, box.File); err != nil {
		return nil, err
	}
	log.Info("Vagrant box built", "file", box.File, "seconds", time.Since(start).Round(100*time.Millisecond).Seconds())
	return box, nil
}

func addFileToTar(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// vagrantInsecureKeys reads the public half of Vagrant's well-known
// insecure key pair from the Vagrant installation: boxes authorize it so
// that Vagrant can log in the first time and put a key of its own in.
func vagrantInsecureKeys() ([]string, error) {
	patterns := []string{
		"/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub", // Debian's package
		"/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",          // HashiCorp's packages
		"/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub",
	}
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		if len(m) == 0 {
			continue
		}
		data, err := os.ReadFile(m[len(m)-1])
		if err != nil {
			return nil, err
		}
		var keys []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				keys = append(keys, l)
			}
		}
		if len(keys) > 0 {
			return keys, nil
		}
	}
	return nil, fmt.Errorf("Vagrant's insecure public key (keys/vagrant.pub) not found in %s", strings.Join(patterns, ", "))
}
