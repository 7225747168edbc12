package devbroker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// lockName is the file in a data directory that the running broker locks.
const lockName = ".sluice-dev-broker.lock"

// prepareDataDir makes dir if needed, checks that it is writable, locks it
// and verifies its segments (see the package doc). dropSASL removes the
// SASL users an earlier run saved, so that the configured one applies.
func prepareDataDir(dir string, dropSASL bool) (*dirLock, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := probeWrite(dir); err != nil {
		return nil, nil, fmt.Errorf("--data-dir %s is not writable: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := checkWritable(dir); err != nil {
		lock.release()
		return nil, nil, fmt.Errorf("--data-dir %s is not writable: %w", dir, err)
	}
	recovered, err := checkSegments(dir)
	if err == nil && dropSASL {
		if rerr := os.Remove(filepath.Join(dir, "sasl.json")); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("--data-dir: %w", rerr)
		}
	}
	if err != nil {
		lock.release()
		return nil, nil, err
	}
	return lock, recovered, nil
}

// probeWrite creates and removes a file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".sluice-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// checkWritable checks that dir and every directory and file under it may
// be written.
func checkWritable(dir string) error {
	if err := probeWrite(dir); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := canWrite(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
}

// Record batch layout (Kafka's v2 format, which kfake writes to segments).
const (
	batchHeaderLen = 12 // base offset (8) and length (4)
	batchMinLen    = 61 // a batch with no records
	batchMagicAt   = 16
	batchCRCAt     = 17
	batchCRCFrom   = 21
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkSegments verifies the record batches of every segment file under
// dir/partitions. It returns an error for a damaged segment, and repairs
// (and reports) an incomplete write at the end of a partition's last
// segment beyond what its last clean shutdown recorded.
func checkSegments(dir string) ([]string, error) {
	parts, err := os.ReadDir(filepath.Join(dir, "partitions"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	var recovered []string
	for _, p := range parts {
		if !p.IsDir() {
			continue
		}
		r, err := checkPartition(dir, filepath.Join("partitions", p.Name()))
		if err != nil {
			return nil, err
		}
		recovered = append(recovered, r...)
	}
	return recovered, nil
}

// checkPartition checks the segments of one partition directory, rel to
// dir.
func checkPartition(dir, rel string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, rel))
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	var bases []int64
	for _, e := range entries {
		if b, ok := strings.CutSuffix(e.Name(), ".dat"); ok {
			if n, err := strconv.ParseInt(b, 10, 64); err == nil {
				bases = append(bases, n)
			}
		}
	}
	slices.Sort(bases)
	clean := cleanSizes(filepath.Join(dir, rel, "snapshot.json"))
	var recovered []string
	for i, base := range bases {
		name := filepath.Join(rel, strconv.FormatInt(base, 10)+".dat")
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
		good, why, torn := validBatches(raw)
		if good == len(raw) {
			continue
		}
		lost := "its records"
		if good+8 <= len(raw) {
			lost = fmt.Sprintf("its records from offset %d on", int64(binary.BigEndian.Uint64(raw[good:])))
		}
		if torn && i == len(bases)-1 && int64(good) >= clean[base] {
			// A write cut short by a crash: the broker never
			// acknowledged it. kfake drops these bytes on load.
			recovered = append(recovered, fmt.Sprintf("%s ended in %d bytes of a write cut short (%s, after the last clean shutdown; never acknowledged): dropped", name, len(raw)-good, why))
			continue
		}
		return nil, fmt.Errorf("--data-dir %s: segment %s is damaged at byte %d (%s): starting would drop %s for good; restore the directory from a backup, or move the segment away to start without them",
			dir, name, good, why, lost)
	}
	return recovered, nil
}

// cleanSizes returns the segment sizes recorded at the partition's last
// clean shutdown, by base offset; none if there was none.
func cleanSizes(snapshot string) map[int64]int64 {
	var snap struct {
		Segments []struct {
			BaseOffset int64 `json:"base_offset"`
			Size       int64 `json:"size"`
		} `json:"segments"`
	}
	out := map[int64]int64{}
	raw, err := os.ReadFile(snapshot)
	if err != nil || json.Unmarshal(raw, &snap) != nil {
		return out
	}
	for _, s := range snap.Segments {
		out[s.BaseOffset] = s.Size
	}
	return out
}

// validBatches returns how many leading bytes of raw are whole record
// batches with good checksums and, if that is not all of raw, why the next
// one is not, and whether it is merely incomplete (a write cut short).
func validBatches(raw []byte) (good int, why string, torn bool) {
	pos := 0
	for pos < len(raw) {
		rest := raw[pos:]
		if len(rest) < batchHeaderLen {
			return pos, "an incomplete batch header", true
		}
		n := int64(binary.BigEndian.Uint32(rest[8:12]))
		size := batchHeaderLen + n
		switch {
		case size < batchMinLen || n > 1<<30:
			return pos, fmt.Sprintf("a batch length of %d", n), false
		case int64(len(rest)) < size:
			return pos, fmt.Sprintf("a batch of %d bytes with %d present", size, len(rest)), true
		case rest[batchMagicAt] != 2:
			return pos, fmt.Sprintf("a batch of format %d", rest[batchMagicAt]), false
		case binary.BigEndian.Uint32(rest[batchCRCAt:]) != crc32.Checksum(rest[batchCRCFrom:size], castagnoli):
			return pos, "a batch that fails its checksum", false
		}
		pos += int(size)
	}
	return pos, "", false
}
