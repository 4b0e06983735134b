package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"lab/internal/shell"

	"github.com/pkg/sftp"
)

// Upload writes what r yields to remotePath on the target with the given permission bits,
// replacing any file there. It uses SFTP, and the shell (cat, chmod, mv) on a host without
// an SFTP server. The file is written under a temporary name and renamed into place, so a
// reader never sees half a file and a binary that is still running is replaced rather than
// overwritten (which Linux refuses with ETXTBSY).
//
// A failure of the connection is a *TransportError; anything else (a missing directory,
// permissions) is an ordinary error.
func (c *Client) Upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error {
	s, err := c.ssh.NewSession()
	if err != nil {
		return c.transportError("upload", fmt.Errorf("opening session: %w", err))
	}
	// The pipes must exist before the subsystem starts.
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return fmt.Errorf("remote: upload %s: %w", remotePath, err)
	}
	rd, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return fmt.Errorf("remote: upload %s: %w", remotePath, err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		// Refused, in all likelihood: the host has no "Subsystem sftp" line. Were the
		// connection gone instead, the shell fallback reports that as a transport error.
		c.log.Info("no SFTP on the target, uploading through the shell", "path", remotePath, "why", err)
		c.lastUpload.Store("exec")
		return c.uploadShell(ctx, r, remotePath, mode)
	}
	c.log.Debug("uploading over SFTP", "path", remotePath)
	c.lastUpload.Store("sftp")
	defer s.Close()
	return c.uploadSFTP(ctx, rd, w, r, remotePath, mode)
}

func (c *Client) uploadSFTP(ctx context.Context, rd io.Reader, w io.WriteCloser, r io.Reader, dst string, mode os.FileMode) error {
	sc, err := sftp.NewClientPipe(rd, w)
	if err != nil {
		return c.uploadError(ctx, dst, "starting SFTP", err)
	}
	defer sc.Close()
	// Closing the SFTP client makes every call in flight return.
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()

	tmp := tempName(dst)
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return c.uploadError(ctx, dst, "creating "+tmp, err)
	}
	_, err = f.ReadFrom(r)
	if err == nil {
		// Explicitly, because the server applies its umask to the mode of a new file.
		err = f.Chmod(mode.Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = sc.PosixRename(tmp, dst)
		if err != nil {
			// Servers without the posix-rename extension (Windows' among them) refuse
			// to rename onto an existing file.
			sc.Remove(dst)
			err = sc.Rename(tmp, dst)
		}
	}
	if err != nil {
		sc.Remove(tmp)
		return c.uploadError(ctx, dst, "writing over SFTP", err)
	}
	return nil
}

func (c *Client) uploadShell(ctx context.Context, r io.Reader, dst string, mode os.FileMode) error {
	tmp := tempName(dst)
	cmd := fmt.Sprintf("cat > %s && chmod %04o %s && mv -f %s %s || { s=$?; rm -f %s; exit $s; }",
		shell.Quote(tmp), mode.Perm(), shell.Quote(tmp), shell.Quote(tmp), shell.Quote(dst), shell.Quote(tmp))
	var stderr bytes.Buffer
	remoteErr, transportErr := c.Run(ctx, cmd, r, nil, &stderr)
	if transportErr != nil {
		return fmt.Errorf("remote: upload %s through the shell: %w", dst, transportErr)
	}
	var ee *ExitError
	if errors.As(remoteErr, &ee) {
		// The full command line would drown the message; name what it did instead.
		short := *ee
		short.Cmd = "cat > " + tmp
		return fmt.Errorf("remote: upload %s through the shell: %w: %s", dst, &short, strings.TrimSpace(stderr.String()))
	}
	if remoteErr != nil {
		return fmt.Errorf("remote: upload %s through the shell: %w", dst, remoteErr)
	}
	return nil
}

// uploadError says whether an SFTP failure was the connection's or the file's.
func (c *Client) uploadError(ctx context.Context, dst, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("remote: upload %s: %s: %w", dst, what, context.Cause(ctx))
	}
	select {
	case <-c.done:
		return c.transportError("upload", fmt.Errorf("%s %s: %w", what, dst, err))
	default:
	}
	var status *sftp.StatusError
	if !errors.As(err, &status) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, sftp.ErrSSHFxConnectionLost)) {
		// The SFTP channel ended under us without the server saying why
		// (the SFTP client says "connection lost" as soon as its channel
		// broke, which may be before the SSH client has noticed).
		return c.transportError("upload", fmt.Errorf("%s %s: %w", what, dst, err))
	}
	if errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxFailure {
		// SFTP version 3 has no code for a full disk: OpenSSH's server
		// reports ENOSPC and EDQUOT as this generic failure.
		return fmt.Errorf("remote: upload %s: %s: %w (the target's disk may be full)", dst, what, err)
	}
	return fmt.Errorf("remote: upload %s: %s: %w", dst, what, err)
}

// tempInfix joins an upload's destination and the random part of the
// temporary name it is written under.
const tempInfix = ".lab-tmp-"

// tempName is a name next to dst that no other upload uses.
func tempName(dst string) string {
	var b [6]byte
	rand.Read(b[:])
	return dst + tempInfix + hex.EncodeToString(b[:])
}

// PartialUploadPrefix starts the names of the temporary files of uploads
// to dst. An upload whose connection was cut cannot remove its own, so
// whoever reconnects removes the files with this prefix (dst must be a name
// only one upload uses, as the agent's is).
func PartialUploadPrefix(dst string) string { return dst + tempInfix }
