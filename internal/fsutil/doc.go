// Package fsutil holds the small file-system steps that more than one layer
// needs to make its files durable.
package fsutil
