package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"lab/internal/flock"
)

// Fetcher downloads catalog images into a cache.
type Fetcher struct {
	// CacheDir is lab's cache; images go to CacheDir/images.
	CacheDir string
	// Client makes the requests; nil is http.DefaultClient. No overall timeout: an
	// image is hundreds of megabytes; ctx ends a download.
	Client *http.Client
	// BaseURL, if set, replaces the scheme and host of every catalog URL (the path
	// stays), for a mirror or for tests serving the publishers' layout.
	BaseURL string
	// Progress receives the download's progress bar; nil shows none.
	Progress io.Writer
}

// Options are a fetch's choices.
type Options struct {
	// SHA256 pins the hash of the file at the image's URL, in hex: required where
	// the publisher has no checksum file, and checked against it where it has one.
	SHA256 string
}

// Fetched describes an image in the cache, as its record (NAME.json) keeps it.
type Fetched struct {
	Name     string    `json:"name"`
	Path     string    `json:"path"`   // the disk to boot
	Format   string    `json:"format"` // qcow2 or raw
	URL      string    `json:"url"`
	Hash     string    `json:"hash"`     // algorithm of Sum
	Sum      string    `json:"sum"`      // of the file at URL, as verified
	Verified string    `json:"verified"` // what vouched for Sum: the checksum file's URL, or "pinned"
	Fetched  time.Time `json:"fetched"`
}

func (f *Fetcher) dir() string { return filepath.Join(f.CacheDir, "images") }

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return http.DefaultClient
}

// url applies BaseURL to a catalog URL.
func (f *Fetcher) url(raw string) (string, error) {
	if f.BaseURL == "" || raw == "" {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	base, err := url.Parse(f.BaseURL)
	if err != nil {
		return "", fmt.Errorf("base URL: %w", err)
	}
	u.Scheme, u.Host = base.Scheme, base.Host
	u.Path = strings.TrimSuffix(base.Path, "/") + u.Path
	return u.String(), nil
}

// Fetch makes the catalog image name ready to boot and returns its record: it
// downloads the file (resuming an interrupted download), checks it against the
// publisher's checksum file and opt.SHA256 before anything else reads it, and
// decompresses or converts it into the cache. An image already fetched is returned
// at once. A file whose hash does not match is deleted and the fetch fails.
func (f *Fetcher) Fetch(ctx context.Context, name string, opt Options) (*Fetched, error) {
	im, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if f.CacheDir == "" {
		return nil, errors.New("fetch: no cache directory")
	}
	if rec, err := readRecord(f.dir(), name); err == nil {
		return rec, rec.checkPin(opt)
	}
	if err := os.MkdirAll(f.dir(), 0o755); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	unlock, err := flock.Lock(ctx, filepath.Join(f.dir(), name+".lock"))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	defer unlock()
	if rec, err := readRecord(f.dir(), name); err == nil {
		return rec, rec.checkPin(opt) // fetched by another process while we waited
	}

	imageURL, err := f.url(im.URL)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	want, verified, err := f.expectedSum(ctx, im, opt)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	part := filepath.Join(f.dir(), im.fileName()+".part")
	if err := download(ctx, f.client(), imageURL, part, newProgress(f.Progress, name)); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	algo := im.Hash
	if algo == "" {
		algo = "sha256" // what a pinned hash is
	}
	got, err := sumFile(algo, part)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	if got != want {
		// Corrupt or not the publisher's: nothing of it may be used or resumed.
		os.Remove(part)
		os.Remove(part + ".json")
		return nil, fmt.Errorf("fetch %s: %w: %s of %s is %s, %s says %s; the download was deleted", name, errMismatch, algo, imageURL, got, verified, want)
	}

	final := filepath.Join(f.dir(), name+im.cachedExt())
	if err := unpack(ctx, im, part, final); err != nil {
		// Verified but unusable (or moved into the refused disk): not worth resuming.
		os.Remove(part)
		os.Remove(part + ".json")
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	rec := &Fetched{Name: name, Path: final, Format: strings.TrimPrefix(im.cachedExt(), "."), URL: imageURL,
		Hash: algo, Sum: got, Verified: verified, Fetched: time.Now().UTC()}
	if err := writeRecord(f.dir(), rec); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	os.Remove(part)
	os.Remove(part + ".json")
	return rec, nil
}

// expectedSum is the hash the download must have, and what vouches for it.
func (f *Fetcher) expectedSum(ctx context.Context, im Image, opt Options) (sum, verified string, err error) {
	pin := strings.ToLower(strings.TrimSpace(opt.SHA256))
	if pin != "" && im.Hash != "" && im.Hash != "sha256" {
		return "", "", fmt.Errorf("%s publishes %s sums; a pinned SHA256 cannot be compared with them", im.Publisher, im.Hash)
	}
	if pin != "" {
		if _, err := ParseSums(BareSums, "sha256", []byte(pin), im.fileName()); err != nil {
			return "", "", fmt.Errorf("--sha256: %w", err)
		}
	}
	if im.Sums == "" {
		if pin == "" {
			return "", "", fmt.Errorf("%s publishes no checksum for %s: give its SHA256 (--sha256), obtained from a source you trust", im.Publisher, im.fileName())
		}
		if im.Hash == "" {
			im.Hash = "sha256"
		}
		return pin, "pinned", nil
	}
	sumsURL, err := f.url(im.Sums)
	if err != nil {
		return "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sumsURL, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return "", "", fmt.Errorf("fetching the checksum file: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("fetching the checksum file %s: %s", sumsURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", "", fmt.Errorf("fetching the checksum file %s: %w", sumsURL, err)
	}
	sum, err = ParseSums(im.SumsFormat, im.Hash, data, im.fileName())
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", sumsURL, err)
	}
	if pin != "" && pin != sum {
		return "", "", fmt.Errorf("%w: the pinned SHA256 %s is not %s's %s", errMismatch, pin, sumsURL, sum)
	}
	return sum, sumsURL, nil
}

// sumFile hashes path with algorithm algo.
func sumFile(algo, path string) (string, error) {
	var h hash.Hash
	switch algo {
	case "sha512":
		h = sha512.New()
	case "sha256", "":
		h = sha256.New()
	default:
		return "", fmt.Errorf("unknown hash %q", algo)
	}
	fl, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fl.Close()
	if _, err := io.Copy(h, fl); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unpack turns the verified download into final: decompressed, converted from
// VMDK, and checked to be a disk QEMU may boot. It writes beside final and renames.
func unpack(ctx context.Context, im Image, src, final string) error {
	tmp := final + ".tmp"
	os.Remove(tmp)
	defer os.Remove(tmp)
	plain := src
	if im.Compression != "" {
		plain = final + ".unpacked"
		defer os.Remove(plain)
		if err := decompress(ctx, im.Compression, src, plain); err != nil {
			return err
		}
	}
	switch im.Format {
	case "vmdk":
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", plain, tmp).CombinedOutput(); err != nil {
			return fmt.Errorf("converting the VMDK to qcow2 (qemu-img, Debian package qemu-utils): %w: %s", err, bytes.TrimSpace(out))
		}
	default:
		if err := os.Rename(plain, tmp); err != nil {
			return err
		}
	}
	if err := checkDisk(ctx, tmp, strings.TrimPrefix(im.cachedExt(), ".")); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// decompress writes the decompressed src to dst.
func decompress(ctx context.Context, how, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	switch how {
	case "xz":
		// xz(1), multi-threaded where the file has blocks, over the pure-Go decoder,
		// which took 3m44s against 11 s for the same 150 MB here.
		cmd := exec.CommandContext(ctx, "xz", "-d", "-c", "-T0")
		cmd.Stdin, cmd.Stdout = in, out
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return fmt.Errorf("decompressing: xz not found (Debian: apt-get install xz-utils)")
			}
			return fmt.Errorf("decompressing with xz: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
	case "zst":
		d, err := zstd.NewReader(in)
		if err != nil {
			return fmt.Errorf("decompressing zstd: %w", err)
		}
		defer d.Close()
		if _, err := io.Copy(out, d); err != nil {
			return fmt.Errorf("decompressing zstd: %w", err)
		}
	default:
		return fmt.Errorf("unknown compression %q", how)
	}
	return out.Close()
}

// checkDisk makes sure path is a disk image of format that stands alone: a qcow2
// downloaded from the internet must not name a backing or data file, which QEMU
// would open on this host and hand to the guest.
func checkDisk(ctx context.Context, path, format string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", "-f", format, path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("the image is not a %s disk (qemu-img info: %s)", format, bytes.TrimSpace(ee.Stderr))
		}
		return fmt.Errorf("checking the image (qemu-img, Debian package qemu-utils): %w", err)
	}
	var info struct {
		Format          string `json:"format"`
		BackingFilename string `json:"backing-filename"`
		FormatSpecific  struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("reading qemu-img info: %w", err)
	}
	if info.BackingFilename != "" {
		return fmt.Errorf("refusing the image: it names a backing file (%s) QEMU would open on this host", info.BackingFilename)
	}
	if info.FormatSpecific.Data.DataFile != "" {
		return fmt.Errorf("refusing the image: it names an external data file (%s)", info.FormatSpecific.Data.DataFile)
	}
	return nil
}

// checkPin refuses a cached image whose verified hash is not the one pinned now.
func (rec *Fetched) checkPin(opt Options) error {
	pin := strings.ToLower(strings.TrimSpace(opt.SHA256))
	if pin == "" || (rec.Hash == "sha256" && rec.Sum == pin) {
		return nil
	}
	return fmt.Errorf("fetch %s: %w: the cached image was verified as %s %s, not the pinned SHA256 %s", rec.Name, errMismatch, rec.Hash, rec.Sum, pin)
}

func recordPath(dir, name string) string { return filepath.Join(dir, name+".json") }

func readRecord(dir, name string) (*Fetched, error) {
	b, err := os.ReadFile(recordPath(dir, name))
	if err != nil {
		return nil, err
	}
	var rec Fetched
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", recordPath(dir, name), err)
	}
	if _, err := os.Stat(rec.Path); err != nil {
		return nil, err
	}
	return &rec, nil
}

func writeRecord(dir string, rec *Fetched) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath(dir, rec.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, recordPath(dir, rec.Name))
}

// Resolve returns the disk a target's disk: value means: the cached image when the
// value is a catalog name (it must have been fetched: lab image fetch NAME), the
// value itself otherwise (a path, which the caller expands).
func Resolve(cacheDir, disk string) (string, error) {
	if _, err := Lookup(disk); err != nil {
		return disk, nil
	}
	rec, err := readRecord(filepath.Join(cacheDir, "images"), disk)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("disk %q names a catalog image that is not fetched yet: run lab image fetch %s", disk, disk)
		}
		return "", fmt.Errorf("disk %q: %w", disk, err)
	}
	return rec.Path, nil
}
