package fsutil

import "go.etcd.io/etcd/client/pkg/v3/fileutil"

// SyncDir fsyncs a directory, making a file created, renamed or removed in
// it durable.
func SyncDir(dir string) error {
	d, err := fileutil.OpenDir(dir)
	if err != nil {
		return err
	}
	err = fileutil.Fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
