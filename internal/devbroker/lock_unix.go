//go:build unix

package devbroker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// dirLock is an exclusive flock(2) on a data directory's lock file; the
// kernel releases it when the process ends, however it ends.
type dirLock struct {
	once sync.Once
	f    *os.File
}

// lockDir locks dir, or says which process holds it.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("--data-dir %s is in use by %s (another sluice dev broker or demo): two brokers on one directory would corrupt it", dir, who)
		}
		return nil, fmt.Errorf("--data-dir: lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release unlocks; it may be called more than once, and on nil.
func (l *dirLock) release() {
	if l == nil {
		return
	}
	l.once.Do(func() { l.f.Close() })
}

// canWrite reports whether this process may write path (access(2), which
// also reports a read-only file system to root).
func canWrite(path string) error {
	return syscall.Access(path, 2) // W_OK
}
